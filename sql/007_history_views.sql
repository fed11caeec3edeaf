-- Views for the common questions about the history (README: "Seeing history").

-- Each spider's latest successful crawl.
CREATE VIEW spider_last_success AS
SELECT DISTINCT ON (spider)
       spider,
       started_at AS last_success_at,
       items_scraped,
       EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - started_at))/3600 AS hours_ago
  FROM spider_runs
 WHERE status = 'completed'
 ORDER BY spider, id DESC;

-- Every spider run of the last 24 hours, newest first.
CREATE VIEW spider_runs_last_24h AS
SELECT run_id, spider, status, failure, items_scraped, error_count, started_at, finished_at,
       EXTRACT(EPOCH FROM (finished_at - started_at)) AS duration_s, message
  FROM spider_runs
 WHERE started_at > CURRENT_TIMESTAMP - INTERVAL '24 hours'
 ORDER BY started_at DESC;

-- Spider runs per spider and status over the last 30 days.
CREATE VIEW spider_status_counts_30d AS
SELECT spider, status, COUNT(*) AS count, MIN(started_at) AS first_run, MAX(started_at) AS last_run
  FROM spider_runs
 WHERE started_at > CURRENT_TIMESTAMP - INTERVAL '30 days'
 GROUP BY spider, status;

-- Hours between a spider's consecutive successful crawls (the promise, per spider).
CREATE VIEW spider_hours_between_successes AS
SELECT spider, started_at,
       LAG(started_at) OVER (PARTITION BY spider ORDER BY started_at) AS previous_success,
       EXTRACT(EPOCH FROM (started_at - LAG(started_at) OVER (PARTITION BY spider ORDER BY started_at)))/3600
           AS hours_between
  FROM spider_runs
 WHERE status = 'completed';

-- Spiders whose latest successful crawl scraped nothing although an earlier one did (the site
-- changed, most likely).
CREATE VIEW spiders_scraping_zero AS
SELECT s.spider, s.last_success_at, prev.items_scraped AS previous_items
  FROM spider_last_success s
  JOIN LATERAL (
        SELECT r.items_scraped FROM spider_runs r
         WHERE r.spider = s.spider AND r.status = 'completed' AND r.items_scraped > 0
         ORDER BY r.id DESC LIMIT 1) prev ON true
 WHERE s.items_scraped = 0;
