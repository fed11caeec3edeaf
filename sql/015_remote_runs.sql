-- Crawls dispatched to Scrapyd nodes (SCHEDULER_ENGINE=scrapyd, README "Beyond one machine"). Each
-- crawl's node, its Scrapyd job id (ours, never reused) and the URL of its log are committed before
-- schedule.json is sent: a daemon restarted mid-run finds its remote crawls again and re-attaches to
-- them instead of failing them as stale and starting new ones. NULL for local crawls.
ALTER TABLE spider_runs ADD COLUMN node TEXT;          -- the node's base URL, e.g. http://scrapyd-1:6800
ALTER TABLE spider_runs ADD COLUMN remote_jobid TEXT;  -- the job id sent with schedule.json
ALTER TABLE spider_runs ADD COLUMN log_url TEXT;       -- the crawl's log under the node's /logs/

-- The remote crawls left 'running' (at take-over: the rows to re-attach, not to fail as stale).
CREATE INDEX spider_runs_remote_running ON spider_runs (id)
    WHERE status = 'running' AND remote_jobid IS NOT NULL;

-- Two more failures of a remote crawl:
-- 'process_died': it ended without its final stats (killed, out of memory): the job's own failure,
--                 counted and retried with backoff like 'error';
-- 'lost': its node or its log went silent beyond SCRAPYD_LOST_AFTER_SECONDS, or its log and stats
--         were gone before they were read: not the job's fault, due again at once like 'stale'.
ALTER TABLE spider_runs DROP CONSTRAINT spider_runs_failure_check;
ALTER TABLE spider_runs ADD CONSTRAINT spider_runs_failure_check
    CHECK (failure IN ('error', 'timeout', 'too_few_items', 'cancelled', 'interrupted', 'stale',
                       'process_died', 'lost'));

-- The job's own failures since its newest success, now with 'process_died': the list is
-- daemon.plan.decision.COUNTED_FAILURES, as daemon/records/queries.py's JOB_HISTORY spells it.
DROP INDEX spider_runs_job_failures;
CREATE INDEX spider_runs_job_failures ON spider_runs (job, id)
    WHERE status = 'failed' AND failure IN ('error', 'timeout', 'too_few_items', 'cancelled', 'process_died');
