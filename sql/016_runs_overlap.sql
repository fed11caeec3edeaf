-- Every job on its own clock (issue 20): a run is now the crawls started by one decision, and
-- several runs may be under way at once (a freed slot is given to the most overdue due job at once,
-- while a long crawl of another run goes on). The one-runner guarantee stays in the database in two
-- places: the runner lock (005, 011) says which daemon runs crawls, and the index below says that a
-- job never has two crawls 'running' at once, whatever any daemon believes.
--
-- Existing rows are neither lost nor rewritten: the index that went allowed at most one 'running'
-- run, and spider_runs_one_per_run at most one row of a job per run, so no database can hold two
-- 'running' rows of one job when this index is built.
DROP INDEX scheduler_state_one_running;

CREATE UNIQUE INDEX spider_runs_one_running_per_job ON spider_runs (job) WHERE status = 'running';
