-- Jobs (README: "Jobs"): a job is a spider plus its arguments and settings plus its own cadence.
-- The records become per job; the lock holder publishes the jobs it runs, so that `status` and
-- the other commands answer from here without starting Scrapy; pauses and cancel requests are
-- kept here, so they outlive restarts and apply to every daemon.

-- Each crawl records the job it ran for and what it ran with. Rows written before jobs existed
-- were runs of the job named after their spider, with no arguments or settings.
ALTER TABLE spider_runs ADD COLUMN job TEXT;
UPDATE spider_runs SET job = spider;
ALTER TABLE spider_runs ALTER COLUMN job SET NOT NULL;
-- A writer that knows nothing of jobs (an older daemon replaying its journal during an upgrade, a
-- script, psql) still records a run of the job named after the spider.
CREATE FUNCTION spider_runs_job_of_spider() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.job := NEW.spider;
    RETURN NEW;
END
$$;
CREATE TRIGGER spider_runs_job_of_spider BEFORE INSERT ON spider_runs
    FOR EACH ROW WHEN (NEW.job IS NULL) EXECUTE FUNCTION spider_runs_job_of_spider();
ALTER TABLE spider_runs ADD COLUMN args JSONB;      -- {"q": "python"}: -a q=python (NULL: rows before jobs)
ALTER TABLE spider_runs ADD COLUMN settings JSONB;  -- {"DOWNLOAD_DELAY": "2"}: -s DOWNLOAD_DELAY=2

-- Two jobs of one spider (different arguments) may run in one batch; one job never runs twice in it.
ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_one_per_run;
ALTER TABLE spider_runs ADD CONSTRAINT spider_runs_one_per_run UNIQUE (run_id, job);

-- Two more failures of the job's own, retried with backoff like 'error' and 'timeout':
-- 'too_few_items' (the crawl scraped fewer than the job's min_items) and 'cancelled' (`cancel JOB`).
ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_failure_check;
ALTER TABLE spider_runs ADD CONSTRAINT spider_runs_failure_check
    CHECK (failure IN ('error', 'timeout', 'too_few_items', 'cancelled', 'interrupted', 'stale'));

-- The decision reads, per job, the newest row of each kind by insertion order, and the job's own
-- failures since its newest success (the per-spider twins: sql/002, sql/010). The failures listed
-- here are daemon.plan.decision.COUNTED_FAILURES, as daemon/records/queries.py's JOB_HISTORY spells them.
CREATE INDEX spider_runs_job_id ON spider_runs (job, id DESC);
CREATE INDEX spider_runs_job_success ON spider_runs (job, id DESC) WHERE status = 'completed';
CREATE INDEX spider_runs_job_failures ON spider_runs (job, id)
    WHERE status = 'failed' AND failure IN ('error', 'timeout', 'too_few_items', 'cancelled');

-- The per-job twins of the per-spider views of sql/007 (those stay as they were).

-- Each job's latest successful crawl.
CREATE VIEW job_last_success AS
SELECT DISTINCT ON (job)
       job,
       spider,
       started_at AS last_success_at,
       items_scraped,
       EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - started_at))/3600 AS hours_ago
  FROM spider_runs
 WHERE status = 'completed'
 ORDER BY job, id DESC;

-- Every crawl of the last 24 hours with its job and arguments, newest first.
CREATE VIEW job_runs_last_24h AS
SELECT run_id, job, spider, args, status, failure, items_scraped, error_count, started_at, finished_at,
       EXTRACT(EPOCH FROM (finished_at - started_at)) AS duration_s, message
  FROM spider_runs
 WHERE started_at > CURRENT_TIMESTAMP - INTERVAL '24 hours'
 ORDER BY started_at DESC;

-- Crawls per job and status over the last 30 days.
CREATE VIEW job_status_counts_30d AS
SELECT job, spider, status, COUNT(*) AS count, MIN(started_at) AS first_run, MAX(started_at) AS last_run
  FROM spider_runs
 WHERE started_at > CURRENT_TIMESTAMP - INTERVAL '30 days'
 GROUP BY job, spider, status;

-- Hours between a job's consecutive successful crawls (the promise, per job).
CREATE VIEW job_hours_between_successes AS
SELECT job, spider, started_at,
       LAG(started_at) OVER (PARTITION BY job ORDER BY started_at) AS previous_success,
       EXTRACT(EPOCH FROM (started_at - LAG(started_at) OVER (PARTITION BY job ORDER BY started_at)))/3600
           AS hours_between
  FROM spider_runs
 WHERE status = 'completed';

-- Jobs whose latest successful crawl scraped nothing although an earlier one did.
CREATE VIEW jobs_scraping_zero AS
SELECT s.job, s.spider, s.last_success_at, prev.items_scraped AS previous_items
  FROM job_last_success s
  JOIN LATERAL (
        SELECT r.items_scraped FROM spider_runs r
         WHERE r.job = s.job AND r.status = 'completed' AND r.items_scraped > 0
         ORDER BY r.id DESC LIMIT 1) prev ON true
 WHERE s.items_scraped = 0;

-- The jobs the lock holder runs now, in the jobs file's order. It rewrites the table in one
-- transaction at start and on every reload of the file. Durations are in seconds.
-- args and settings are JSON (not JSONB) objects: JSON keeps their keys in the file's order, so a
-- job read back is the job published.
CREATE TABLE jobs (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    spider TEXT NOT NULL,
    args JSON NOT NULL,                -- {"q": "python"}: -a q=python
    settings JSON NOT NULL,            -- {"DOWNLOAD_DELAY": "2"}: -s DOWNLOAD_DELAY=2
    every_s DOUBLE PRECISION NOT NULL,
    timeout_s DOUBLE PRECISION NOT NULL,
    retry_delay_s DOUBLE PRECISION NOT NULL,
    max_errors INTEGER NOT NULL,
    min_items INTEGER NOT NULL,
    jitter_s DOUBLE PRECISION NOT NULL,
    paused BOOLEAN NOT NULL            -- `paused = true` in the file (`pause JOB` is job_pauses)
);

-- Where the published jobs came from (one row at most).
CREATE TABLE jobs_source (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    path TEXT,                         -- the jobs file; NULL: no file, one job per spider
    loaded_at TIMESTAMP WITH TIME ZONE,
    error TEXT,                        -- the file's problems while the last good jobs keep running; NULL: fine
    spiders TEXT[],                    -- the project's spiders as last listed
    listed_at TIMESTAMP WITH TIME ZONE,
    published_by TEXT                  -- the lock holder that published them
);

-- `python -m daemon pause JOB [--for DURATION]`; `resume JOB` deletes the row.
CREATE TABLE job_pauses (
    job TEXT PRIMARY KEY,
    paused_at TIMESTAMP WITH TIME ZONE NOT NULL,
    until TIMESTAMP WITH TIME ZONE     -- NULL: until resumed
);

-- `python -m daemon cancel JOB`, taken by the lock holder like run_requests (sql/008).
CREATE TABLE cancel_requests (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    requested_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    taken_at TIMESTAMP WITH TIME ZONE  -- when the lock holder took it
);
CREATE INDEX cancel_requests_pending ON cancel_requests (id) WHERE taken_at IS NULL;

COMMENT ON COLUMN run_requests.spiders IS 'the names of the jobs to run (a job named after its spider for rows '
    'before jobs existed); NULL: every job';
