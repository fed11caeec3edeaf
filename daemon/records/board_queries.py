"""The board's named queries (daemon/records/board.py, daemon/records/store.py's readers, the page): the requests the
commands leave for the lock holder (run-now, pause, cancel), the jobs it publishes for them, and
what status, explain, the page and logs read. Bound parameters only; the loop's own queries (the
lock, the runs, the history) are in daemon/records/queries.py."""

# run-now: requests from `python -m daemon run-now`, taken by the lock holder.
RUN_NOW_CHANNEL = "scheduler_run_now"
LISTEN_RUN_NOW = "LISTEN scheduler_run_now"
INSERT_RUN_REQUEST = "INSERT INTO run_requests (spiders) VALUES (%(spiders)s) RETURNING id"
NOTIFY_RUN_NOW = "SELECT pg_notify('scheduler_run_now', %(id)s::text)"
TAKE_RUN_REQUESTS = """
UPDATE run_requests SET taken_at = %(now)s
 WHERE taken_at IS NULL
RETURNING id, spiders
"""

# Jobs: what the lock holder runs, published for the commands (sql/012_jobs.sql), rewritten whole.
DELETE_JOBS = "DELETE FROM jobs"
INSERT_JOBS = """
INSERT INTO jobs (name, position, spider, args, settings, every_s, timeout_s, retry_delay_s, max_errors,
                  min_items, jitter_s, paused, calendar, schedule_since, baseline)
SELECT name, position, spider, args, settings, every_s, timeout_s, retry_delay_s, max_errors, min_items,
       jitter_s, paused, calendar, schedule_since, baseline
  FROM json_to_recordset(%(jobs)s::json) AS j (name text, position int, spider text, args json,
       settings json, every_s float8, timeout_s float8, retry_delay_s float8, max_errors int, min_items int,
       jitter_s float8, paused boolean, calendar json, schedule_since timestamptz, baseline jsonb)
"""
# Each published calendar job's calendar and since when it is published as it is (sql/019), read
# before the jobs are rewritten: an unchanged calendar keeps its moment.
SCHEDULES_SINCE = "SELECT name, calendar::text, schedule_since FROM jobs WHERE calendar IS NOT NULL"
# `spiders` NULL keeps the list (and when it was listed) stored before.
PUBLISH_JOBS_SOURCE = """
INSERT INTO jobs_source (singleton, path, loaded_at, error, spiders, listed_at, published_by)
VALUES (true, %(path)s, %(now)s, %(error)s, %(spiders)s, CASE WHEN %(spiders)s IS NULL THEN NULL ELSE %(now)s END,
        %(owner)s)
ON CONFLICT (singleton) DO UPDATE
   SET path = EXCLUDED.path, loaded_at = EXCLUDED.loaded_at, error = EXCLUDED.error,
       spiders = COALESCE(EXCLUDED.spiders, jobs_source.spiders),
       listed_at = CASE WHEN EXCLUDED.spiders IS NULL THEN jobs_source.listed_at ELSE EXCLUDED.listed_at END,
       published_by = EXCLUDED.published_by
"""
PUBLISHED_JOBS = """
SELECT name, spider, args, settings, every_s, timeout_s, retry_delay_s, max_errors, min_items, jitter_s, paused,
       calendar
  FROM jobs ORDER BY position
"""
JOBS_SOURCE = "SELECT path, loaded_at, error, spiders, listed_at FROM jobs_source"

# pause / resume / cancel: kept here for every daemon; each NOTIFYs the channel the lock holder
# listens on (the payload only says what changed), so it hears them within a second.
NOTIFY_JOBS_CHANGED = "SELECT pg_notify('scheduler_run_now', %(what)s)"
PAUSE_JOB = """
INSERT INTO job_pauses (job, paused_at, until) VALUES (%(job)s, %(now)s, %(until)s)
ON CONFLICT (job) DO UPDATE SET paused_at = EXCLUDED.paused_at, until = EXCLUDED.until
"""
RESUME_JOB = "DELETE FROM job_pauses WHERE job = %(job)s"
PAUSES = "SELECT job, until FROM job_pauses WHERE until IS NULL OR until > %(now)s"
INSERT_CANCEL_REQUESTS = "INSERT INTO cancel_requests (job) SELECT unnest(%(jobs)s::text[])"
TAKE_CANCEL_REQUESTS = """
WITH taken AS (
    UPDATE cancel_requests SET taken_at = %(now)s WHERE taken_at IS NULL RETURNING id, job)
SELECT job FROM taken GROUP BY job ORDER BY min(id)
"""

# status: what `python -m daemon status` shows.
KNOWN_SPIDERS = """
WITH RECURSIVE names AS (
    (SELECT spider FROM spider_runs ORDER BY spider LIMIT 1)
    UNION ALL
    SELECT (SELECT r.spider FROM spider_runs r WHERE r.spider > names.spider ORDER BY r.spider LIMIT 1)
      FROM names WHERE names.spider IS NOT NULL)
SELECT spider FROM names WHERE spider IS NOT NULL
"""
LATEST_SPIDER_RUNS = """
SELECT DISTINCT ON (s.spider) s.spider, r.started_at, r.finished_at, r.status, r.failure, r.items_scraped, r.message
  FROM unnest(%(spiders)s::text[]) AS s (spider)
  LEFT JOIN LATERAL (SELECT * FROM spider_runs x WHERE x.spider >= s.spider AND x.spider <= s.spider
                      ORDER BY x.spider, x.id DESC LIMIT 1) r ON true  -- the range: see SPIDER_HISTORY
"""
LATEST_JOB_RUNS = """
SELECT j.job, r.started_at, r.finished_at, r.status, r.failure, r.items_scraped, r.message
  FROM unnest(%(jobs)s::text[]) WITH ORDINALITY AS j (job, position)
  LEFT JOIN LATERAL (SELECT * FROM spider_runs x WHERE x.job >= j.job AND x.job <= j.job
                      ORDER BY x.job, x.id DESC LIMIT 1) r ON true  -- the range: see SPIDER_HISTORY
 ORDER BY j.position
"""
LATEST_RUN = """
SELECT id, last_run_at, finished_at, status, spider_count, error FROM scheduler_state ORDER BY id DESC LIMIT 1
"""
PENDING_RUN_REQUESTS = "SELECT count(*) FROM run_requests WHERE taken_at IS NULL"

# explain: who runs the jobs, and what a job waits for. Whether any session holds the runner lock
# is read from pg_locks (a bigint advisory key shows as its high and low 32 bits, objsubid 1),
# never by trying the lock: taking it, even for a moment, would keep a daemon from running.
RUNNER_HOLDER = """
SELECT EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND l.classid = (%(key)s::bigint >> 32)::oid AND l.objid = (%(key)s::bigint & 4294967295)::oid),
       h.owner, h.acquired_at
  FROM (SELECT 1) AS one LEFT JOIN runner_holder h ON true
"""
RUN_UNDER_WAY = """
SELECT s.last_run_at, s.spider_count,
       (SELECT count(*) FROM spider_runs r WHERE r.run_id = s.id),
       (SELECT count(*) FROM spider_runs r WHERE r.run_id = s.id AND r.status = 'running')
  FROM scheduler_state s WHERE s.status = 'running'
"""
# A request names jobs, or spiders for all their jobs (Catalog.resolve); NULL: every job.
PENDING_RUN_REQUEST_FOR = """
SELECT min(requested_at) FROM run_requests
 WHERE taken_at IS NULL AND (spiders IS NULL OR %(job)s = ANY (spiders) OR %(spider)s = ANY (spiders))
"""

# The page (daemon/web/pagedata.py), on its own read-only session. Each job's crawls that started in
# the window, through spider_runs_job_started (sql/014_page_index.sql), plus any still running
# (spider_runs_running); a message is cut to what the page shows, stats and logs are left out.
PAGE_CRAWLS = """
SELECT id, job, spider, status, failure, started_at, finished_at, items_scraped, error_count, finish_reason,
       left(message, 1000), exit_code, suspect
  FROM spider_runs WHERE job = ANY (%(jobs)s) AND started_at >= %(since)s
UNION
SELECT id, job, spider, status, failure, started_at, finished_at, items_scraped, error_count, finish_reason,
       left(message, 1000), exit_code, suspect
  FROM spider_runs WHERE status = 'running' AND job = ANY (%(jobs)s)
 ORDER BY 6, 1
"""
# Each job's last success before the window: where a gap across the window's start begins.
PAGE_SUCCESSES_BEFORE = """
SELECT j.job, ok.started_at
  FROM unnest(%(jobs)s::text[]) AS j (job)
  JOIN LATERAL (SELECT r.started_at FROM spider_runs r
                 WHERE r.job = j.job AND r.started_at < %(since)s AND r.status = 'completed'
                 ORDER BY r.started_at DESC LIMIT 1) ok ON true
"""
PAGE_CRAWL = """
SELECT id, job, spider, status, failure, started_at, finished_at, items_scraped, error_count, finish_reason,
       message, exit_code, run_id, args, settings, stats, log_tail
  FROM spider_runs WHERE id = %(id)s
"""
# The job's crawls before and after one, in the order they were recorded (the range: see SPIDER_HISTORY).
PAGE_NEIGHBOURS = """
SELECT (SELECT max(id) FROM spider_runs WHERE job >= %(job)s AND job <= %(job)s AND id < %(id)s),
       (SELECT min(id) FROM spider_runs WHERE job >= %(job)s AND job <= %(job)s AND id > %(id)s)
"""

# logs: one crawl of a job (the newest, or the one asked for), and the jobs there are to name.
CRAWL_FOR_LOG = """
SELECT id, job, spider, status, started_at, finished_at, pid, log_tail FROM spider_runs
 WHERE job = %(job)s AND (%(id)s::bigint IS NULL OR id = %(id)s)
 ORDER BY id DESC LIMIT 1
"""
JOB_NAMES = "SELECT name FROM jobs ORDER BY position"
# explain JOB: the job's latest crawl judged suspect against its baseline (sql/017), and why.
LAST_SUSPECT = """
SELECT started_at, suspect FROM spider_runs WHERE job >= %(job)s AND job <= %(job)s AND suspect IS NOT NULL
 ORDER BY job, id DESC LIMIT 1  -- the range: see SPIDER_HISTORY
"""
LATEST_SUSPECTS = """
SELECT j.job, r.suspect
  FROM unnest(%(jobs)s::text[]) AS j (job)
  JOIN LATERAL (SELECT suspect FROM spider_runs x WHERE x.job >= j.job AND x.job <= j.job
                 ORDER BY x.job, x.id DESC LIMIT 1) r ON r.suspect IS NOT NULL  -- the range: see SPIDER_HISTORY
"""
