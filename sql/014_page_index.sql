-- The page (README: "The page") draws each job's crawls of the last days: this index finds them
-- by job and start time, whatever the size of the history (daemon/records/queries.py: PAGE_CRAWLS), and
-- a job's last success before the window (PAGE_SUCCESSES_BEFORE).
CREATE INDEX spider_runs_job_started ON spider_runs (job, started_at);
