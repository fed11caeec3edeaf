"""Spiders that succeed, raise, scrape nothing, take their time, hang, or ignore SIGTERM."""

import asyncio
import os
import signal
import time

import scrapy

from testproject.spiders import site_url


class OkSpider(scrapy.Spider):
    """Follows the local site's pages and scrapes every item."""

    name = "ok"

    async def start(self):
        yield scrapy.Request(site_url("/"))

    def parse(self, response):
        for item in response.css("li.item::text").getall():
            yield {"name": item}
        for href in response.css("a.next::attr(href)").getall():
            yield response.follow(href, self.parse)


class OtherSpider(OkSpider):
    name = "other"


class BoomSpider(OkSpider):
    """Raises in its callback: Scrapy logs the error and still exits 0."""

    name = "boom"

    def parse(self, response):
        raise RuntimeError("the site changed its layout")


class EmptySpider(OkSpider):
    """Finds nothing: a success with zero items."""

    name = "empty"

    def parse(self, response):
        return []


class SlowSpider(OkSpider):
    """Waits its `seconds` argument or SLOW_SECONDS (without blocking the reactor, so SIGTERM stops it cleanly), then scrapes."""

    name = "slow"

    async def parse(self, response):
        hang = os.environ.get("SPIDER_HANG_FILE")
        if hang and os.path.exists(hang):
            # The soak's "hanging spider" fault: block the reactor, deaf to SIGTERM.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(3600)
        # A job's `seconds` argument (args = { seconds = "60" }) before SLOW_SECONDS: one jobs file
        # may hold a long and a short crawl of this spider.
        seconds = getattr(self, "seconds", None) or os.environ.get("SLOW_SECONDS", "5")
        await asyncio.sleep(float(seconds))
        # SPIDER_GATE_FILE, if it exists when the wait ends, holds the crawl until a test removes it
        # (bounded: ten minutes): a crawl as long as the test needs, not a timer it races.
        gate = os.environ.get("SPIDER_GATE_FILE")
        deadline = time.monotonic() + 600
        while gate and os.path.exists(gate) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for item in response.css("li.item::text").getall():
            yield {"name": item}


class HangSpider(OkSpider):
    """Blocks forever and ignores SIGTERM: only SIGKILL ends it."""

    name = "hang"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def parse(self, response):
        time.sleep(3600)
        return []


class SlowTwoSpider(SlowSpider):
    name = "slow2"


class CrashSpider(OkSpider):
    """Dies with exit code 1 in the middle of the crawl."""

    name = "crash"

    def parse(self, response):
        os._exit(1)


class SegfaultSpider(OkSpider):
    """Dies of SIGSEGV in the middle of the crawl."""

    name = "segv"

    def parse(self, response):
        os.kill(os.getpid(), signal.SIGSEGV)
        return []
