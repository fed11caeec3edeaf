"""The benchmark's Scrapy project: BENCH_SPIDERS identical tiny spiders crawling only the site the
benchmark serves on 127.0.0.1 (BENCH_SITE_URL)."""

BOT_NAME = "benchproject"
SPIDER_MODULES = ["benchproject.spiders"]
ROBOTSTXT_OBEY = False
LOG_LEVEL = "INFO"
DOWNLOAD_TIMEOUT = 10
RETRY_ENABLED = False
TELNETCONSOLE_ENABLED = False
