"""bench_000 ... bench_NNN: as many copies of one small crawl as BENCH_SPIDERS asks for (default 20).

Each follows the benchmark site's three pages of five items, so a crawl costs what Scrapy itself
costs (interpreter, reactor, three requests on 127.0.0.1) and nothing the network adds.
"""

import os

import scrapy


class _SmallCrawl(scrapy.Spider):
    async def start(self):
        yield scrapy.Request(os.environ.get("BENCH_SITE_URL", "http://127.0.0.1:9") + "/")

    def parse(self, response):
        for item in response.css("li.item::text").getall():
            yield {"name": item}
        for href in response.css("a.next::attr(href)").getall():
            yield response.follow(href, self.parse)


for _n in range(int(os.environ.get("BENCH_SPIDERS", "20"))):
    _name = f"bench_{_n:03d}"
    globals()[_name] = type(_name, (_SmallCrawl,), {"name": _name})
