"""Settings of the example project: a polite crawl of a public scraping sandbox."""

BOT_NAME = "example_project"
SPIDER_MODULES = ["example_project.spiders"]
NEWSPIDER_MODULE = "example_project.spiders"

USER_AGENT = "persistent-scheduler-example (+https://quotes.toscrape.com is a scraping sandbox)"
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS_PER_DOMAIN = 1
DOWNLOAD_DELAY = 1.0
AUTOTHROTTLE_ENABLED = True
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = "INFO"

# Scrapy's filesystem HTTP cache (the scheduler's cache housekeeping works with it).
HTTPCACHE_ENABLED = True
HTTPCACHE_DIR = "/tmp/persistent-scheduler/httpcache"
HTTPCACHE_EXPIRATION_SECS = 3600
