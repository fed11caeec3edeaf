"""Quotes from quotes.toscrape.com, a site made for practising scraping."""

from urllib.parse import urlsplit

import scrapy


class QuotesSpider(scrapy.Spider):
    name = "quotes"
    allowed_domains = ["quotes.toscrape.com"]
    start_urls = ["https://quotes.toscrape.com/"]
    # Politeness: the first pages only. Counted here rather than with CLOSESPIDER_PAGECOUNT, which
    # would end every crawl with finish_reason 'closespider_pagecount' - a failure to the
    # scheduler, which counts a crawl as successful only when Scrapy says 'finished'.
    max_pages = 5

    def __init__(self, start_url=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if start_url:  # `scrapy crawl quotes -a start_url=...`: the same crawl of another copy
            self.start_urls = [start_url]
            self.allowed_domains = [urlsplit(start_url).hostname]
        self.pages = 0

    def parse(self, response):
        self.pages += 1
        for quote in response.css("div.quote"):
            yield {
                "text": quote.css("span.text::text").get(),
                "author": quote.css("small.author::text").get(),
                "tags": quote.css("div.tags a.tag::text").getall(),
            }
        next_page = response.css("li.next a::attr(href)").get()
        if next_page and self.pages < self.max_pages:
            yield response.follow(next_page, self.parse)
