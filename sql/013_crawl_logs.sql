-- Each crawl's log (README: "Each crawl's log"): the last lines the crawl printed (stdout and
-- stderr, capped at about 200 lines or 16 kB), kept with its row so that the run's page and
-- `python -m daemon logs` show them even when the crawl's log file is gone or the daemon runs on
-- another machine. NULL: a crawl recorded before this column existed, or one still running.
-- The text comes from crawled sites: whoever shows it escapes it.
ALTER TABLE spider_runs ADD COLUMN log_tail TEXT;
