"""The tests' Scrapy project: crawls only the local site the tests serve on 127.0.0.1."""

BOT_NAME = "testproject"
SPIDER_MODULES = ["testproject.spiders"]
ROBOTSTXT_OBEY = False
LOG_LEVEL = "INFO"
DOWNLOAD_TIMEOUT = 10
RETRY_ENABLED = False
EXTENSIONS = {"testproject.sidechannel.SideChannel": 0}
