-- Found by bench/ with 1,000,000 runs and 10,000,000 spider rows (issue "Performance").

-- The decision query counts each spider's failures since its last success. Without an index
-- made for it PostgreSQL walked the primary key from that success onwards, filtering: 7.6 s for
-- 20 spiders. Only the failures that count for the backoff are in this one.
CREATE INDEX spider_runs_spider_failures ON spider_runs (spider, id)
    WHERE status = 'failed' AND failure IN ('error', 'timeout');

-- The design's queries on completed runs (the last success, the hours between them) read them in
-- last_run_at order.
CREATE INDEX scheduler_state_completed_last_run_at ON scheduler_state (last_run_at)
    WHERE status = 'completed';

-- The same answer as the design's query (kept verbatim in sql/monitoring.sql), without computing
-- LAG over every completed run in history first: the 10 newest need only the 11 newest.
CREATE OR REPLACE VIEW hours_between_completed_runs AS
SELECT last_run_at, previous_run, hours_between
  FROM (SELECT
            last_run_at,
            LAG(last_run_at) OVER (ORDER BY last_run_at) as previous_run,
            EXTRACT(EPOCH FROM (
                last_run_at - LAG(last_run_at) OVER (ORDER BY last_run_at)
            ))/3600 AS hours_between
          FROM (SELECT last_run_at FROM scheduler_state
                 WHERE status = 'completed'
                 ORDER BY last_run_at DESC
                 LIMIT 11) AS newest) AS spaced
 ORDER BY last_run_at DESC
 LIMIT 10;
