"""The persistent scheduler: every Scrapy spider of a project runs successfully at least once per interval.

Importing this package must stay cheap: the daemon never imports scrapy (crawls run as subprocesses).
"""
