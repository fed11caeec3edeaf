"""The tests' Scrapy project: crawls only the local site the tests serve on 127.0.0.1."""

BOT_NAME = "testproject"
SPIDER_MODULES = ["testproject.spiders"]
ROBOTSTXT_OBEY = False
LOG_LEVEL = "INFO"
DOWNLOAD_TIMEOUT = 10
RETRY_ENABLED = False
EXTENSIONS = {"testproject.sidechannel.SideChannel": 0}

# The cache_cleanup tests turn Scrapy's filesystem HTTP cache on through the environment.
import os  # noqa: E402

if os.environ.get("TEST_HTTPCACHE_DIR"):
    HTTPCACHE_ENABLED = True
    HTTPCACHE_DIR = os.environ["TEST_HTTPCACHE_DIR"]
    HTTPCACHE_EXPIRATION_SECS = int(os.environ.get("TEST_HTTPCACHE_EXPIRATION_SECS", "3600"))
