"""Appends `start|end <unix time> <pid> <job>` to $SPIDER_SIDE_CHANNEL: the tests' record of what
really ran, independent of the scheduler's own database. The job is the SCHEDULER_JOB setting the
daemon gives every crawl (the spider's name when run by hand), so overlaps are counted per job."""

import os
import time

from scrapy import signals


def note(kind, spider_name):
    path = os.environ.get("SPIDER_SIDE_CHANNEL")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{kind} {time.time():.6f} {os.getpid()} {spider_name}\n")


class SideChannel:
    @classmethod
    def from_crawler(cls, crawler):
        ext = cls()
        crawler.signals.connect(ext.opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.closed, signal=signals.spider_closed)
        return ext

    def opened(self, spider):
        note("start", spider.settings.get("SCHEDULER_JOB") or spider.name)

    def closed(self, spider, reason):
        note("end", spider.settings.get("SCHEDULER_JOB") or spider.name)
