-- The design's four monitoring queries, as views (sql/monitoring.sql runs the queries verbatim).

-- Last successful run.
CREATE VIEW last_successful_run AS
SELECT last_run_at, spider_count, status
FROM scheduler_state
WHERE status = 'completed'
ORDER BY last_run_at DESC
LIMIT 1;

-- History of the last 24 hours.
CREATE VIEW runs_last_24h AS
SELECT
    last_run_at,
    spider_count,
    status,
    EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - last_run_at))/3600 AS hours_ago
FROM scheduler_state
WHERE last_run_at > CURRENT_TIMESTAMP - INTERVAL '24 hours'
ORDER BY last_run_at DESC;

-- Runs per status over the last 30 days.
CREATE VIEW run_status_counts_30d AS
SELECT
    status,
    COUNT(*) as count,
    MIN(last_run_at) as first_run,
    MAX(last_run_at) as last_run
FROM scheduler_state
WHERE last_run_at > CURRENT_TIMESTAMP - INTERVAL '30 days'
GROUP BY status;

-- Hours between consecutive completed runs (the newest ten).
CREATE VIEW hours_between_completed_runs AS
SELECT
    last_run_at,
    LAG(last_run_at) OVER (ORDER BY last_run_at) as previous_run,
    EXTRACT(EPOCH FROM (
        last_run_at - LAG(last_run_at) OVER (ORDER BY last_run_at)
    ))/3600 AS hours_between
FROM scheduler_state
WHERE status = 'completed'
ORDER BY last_run_at DESC
LIMIT 10;
