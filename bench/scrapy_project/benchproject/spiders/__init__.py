"""bench_000 ... bench_NNN: as many copies of one small crawl as BENCH_SPIDERS asks for (default 20).

Each follows the benchmark site's three pages of five items, so a crawl costs what Scrapy itself
costs (interpreter, reactor, three requests on 127.0.0.1) and nothing the network adds.
"""

import asyncio
import os

import scrapy


class _SmallCrawl(scrapy.Spider):
    async def start(self):
        yield scrapy.Request(os.environ.get("BENCH_SITE_URL", "http://127.0.0.1:9") + "/")

    async def parse(self, response):
        # A job's `seconds` argument (or BENCH_CRAWL_SECONDS): a long crawl, without blocking the
        # reactor (the free-slots section's long crawl beside short ones).
        seconds = float(getattr(self, "seconds", None) or os.environ.get("BENCH_CRAWL_SECONDS") or 0)
        if seconds and response.url.rstrip("/").endswith(os.environ.get("BENCH_SITE_URL", "").rstrip("/")):
            await asyncio.sleep(seconds)
        for item in response.css("li.item::text").getall():
            yield {"name": item}
        for href in response.css("a.next::attr(href)").getall():
            yield response.follow(href, self.parse)


for _n in range(int(os.environ.get("BENCH_SPIDERS", "20"))):
    _name = f"bench_{_n:03d}"
    globals()[_name] = type(_name, (_SmallCrawl,), {"name": _name})
