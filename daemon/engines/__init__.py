"""Who runs the crawls: the engine contract, the local runner (`scrapy crawl` subprocesses) and
each crawl's log file; `scrapyd/` is the engine of SCHEDULER_ENGINE=scrapyd.
May import: jobs, settings, system.
"""
