"""The Scrapyd engine (SCHEDULER_ENGINE=scrapyd): the HTTP client of a node, the engine that
dispatches and watches remote crawls, where a crawl goes, and the pure rules. Imported only when
that engine is chosen. May import what engines/ may: jobs, settings, system.
"""
