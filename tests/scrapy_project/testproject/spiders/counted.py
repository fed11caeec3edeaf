"""A spider that scrapes as many items as the file of its `count_file` argument says (1,000 one
day, 40 the next: a site whose markup changed), from one page of the local site."""

import scrapy

from testproject.spiders import site_url


class CountedSpider(scrapy.Spider):
    name = "counted"

    async def start(self):
        yield scrapy.Request(site_url("/"))

    def parse(self, response):
        with open(self.count_file, encoding="utf-8") as fh:
            count = int(fh.read().strip())
        for n in range(count):
            yield {"n": n}
