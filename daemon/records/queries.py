"""Short named queries with bound parameters. Times always come from the daemon's clock (`now`),
never from the server's CURRENT_TIMESTAMP, so the decision and the records agree on one clock."""

# Session-level advisory lock keys (any two distinct bigints, fixed forever).
RUNNER_LOCK_KEY = 7_421_001_001  # held for the life of the daemon that runs spiders
MIGRATION_LOCK_KEY = 7_421_001_002  # held while migrations are applied

TRY_RUNNER_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
RELEASE_RUNNER_LOCK = "SELECT pg_advisory_unlock(%(key)s)"
# Who held the lock before (see sql/011_runner_holder.sql): the statement's snapshot is taken
# before its own write, so `previous` is the owner it replaces (NULL: none, or a clean stop).
CLAIM_RUNNER_HOLDER = """
WITH previous AS (SELECT owner FROM runner_holder)
INSERT INTO runner_holder (singleton, owner, acquired_at) VALUES (true, %(owner)s, clock_timestamp())
ON CONFLICT (singleton) DO UPDATE SET owner = EXCLUDED.owner, acquired_at = EXCLUDED.acquired_at
RETURNING (SELECT owner FROM previous)
"""
FORGET_RUNNER_HOLDER = "DELETE FROM runner_holder WHERE owner = %(owner)s"

# Rows left 'running' by a daemon that died. Only called while holding the runner lock, so no
# other daemon can be running them.
MARK_STALE_SPIDER_RUNS = """
UPDATE spider_runs
   SET status = 'failed', failure = 'stale', finished_at = %(now)s, message = %(message)s
 WHERE status = 'running' AND (NOT %(keep_remote)s OR remote_jobid IS NULL)
RETURNING run_id, spider
"""
# The remote crawls (SCHEDULER_ENGINE=scrapyd) left 'running': re-attached, not failed as stale.
REMOTE_RUNNING_SPIDER_RUNS = """
SELECT id, run_id, job, spider, node, remote_jobid, started_at,
       GREATEST(EXTRACT(EPOCH FROM %(now)s - started_at), 0)::float8
  FROM spider_runs WHERE status = 'running' AND remote_jobid IS NOT NULL
 ORDER BY id
"""
MARK_STALE_RUNS = """
UPDATE scheduler_state
   SET status = 'failed', finished_at = %(now)s, updated_at = %(now)s, error = %(message)s
 WHERE status = 'running'
RETURNING id
"""

# Per spider: the newest success (by insertion order, so a clock set back cannot hide new rows)
# and the spider's own failures since then. Also the liveness probe of the lock connection.
#
# "The newest row of one spider" is written `spider >= s.spider AND spider <= s.spider ORDER BY
# spider, id DESC` on purpose. With `spider = s.spider ORDER BY id DESC` PostgreSQL may walk the
# primary key backwards, filtering, on the guess that matches are spread evenly; for a spider
# with no recent row (a new one, one failing for weeks) that reads the whole table: 140 ms at
# 200,000 rows in bench/, seconds at 10 million. The range keeps the planner from treating
# the spider as fixed, so only the (spider, id DESC) indexes give that order: 0.2 ms, always.
SPIDER_HISTORY = """
SELECT s.spider, ok.started_at, COALESCE(bad.failures, 0), bad.last_failure_at
  FROM unnest(%(spiders)s::text[]) WITH ORDINALITY AS s (spider, position)
  LEFT JOIN LATERAL (
        SELECT r.id, r.started_at FROM spider_runs r
         WHERE r.spider >= s.spider AND r.spider <= s.spider AND r.status = 'completed'
         ORDER BY r.spider, r.id DESC LIMIT 1) ok ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS failures,
               max(COALESCE(f.finished_at, f.started_at)) AS last_failure_at
          FROM spider_runs f
         WHERE f.spider = s.spider AND f.status = 'failed'
           AND f.failure IN ('error', 'timeout') AND f.id > COALESCE(ok.id, 0)) bad ON true
 ORDER BY s.position
"""
# The same per job (the decision's unit since jobs): the job's newest success and its own failures
# since then, the range trick above on `job`. The failures counted are
# daemon.plan.decision.COUNTED_FAILURES, spelled out so that the index spider_runs_job_failures
# (sql/015_remote_runs.sql, the same list) is provably usable. SPIDER_HISTORY stays for bench/.
JOB_HISTORY = """
SELECT j.job, ok.started_at, COALESCE(bad.failures, 0), bad.last_failure_at, bad.last_failure_kind
  FROM unnest(%(jobs)s::text[]) WITH ORDINALITY AS j (job, position)
  LEFT JOIN LATERAL (
        SELECT r.id, r.started_at FROM spider_runs r
         WHERE r.job >= j.job AND r.job <= j.job AND r.status = 'completed'
         ORDER BY r.job, r.id DESC LIMIT 1) ok ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS failures,
               max(COALESCE(f.finished_at, f.started_at)) AS last_failure_at,
               (array_agg(f.failure ORDER BY f.id DESC))[1] AS last_failure_kind
          FROM spider_runs f
         WHERE f.job = j.job AND f.status = 'failed'
           AND f.failure IN ('error', 'timeout', 'too_few_items', 'cancelled', 'process_died')
           AND f.id > COALESCE(ok.id, 0)) bad ON true
 ORDER BY j.position
"""

INSERT_RUN = """
INSERT INTO scheduler_state (last_run_at, spider_count, status, created_at, updated_at, owner, heartbeat_at)
VALUES (%(now)s, %(spider_count)s, 'running', %(now)s, %(now)s, %(owner)s, clock_timestamp())
RETURNING id
"""
# The run's lease: refreshed on the lock connection while crawls run (a failure here means the
# lock may be gone). Lease times are the server's: they compare daemons on different clocks.
TOUCH_RUN = """
UPDATE scheduler_state SET heartbeat_at = clock_timestamp()
 WHERE id = %(run_id)s AND status = 'running'
"""
RUNNING_RUNS = """
SELECT id, owner, EXTRACT(EPOCH FROM clock_timestamp() - COALESCE(heartbeat_at, updated_at))::float8
  FROM scheduler_state WHERE status = 'running'
"""
# A run's end, and a spider run's result: the same columns whether written live or replayed.
_SET_RUN_END = """
UPDATE scheduler_state
   SET status = %(status)s, finished_at = %(now)s, updated_at = %(now)s, error = %(error)s
"""
_SET_SPIDER_RUN_RESULT = """
UPDATE spider_runs
   SET status = %(status)s, failure = %(failure)s, finished_at = %(now)s,
       exit_code = %(exit_code)s, finish_reason = %(finish_reason)s,
       items_scraped = %(items_scraped)s, error_count = %(error_count)s,
       message = %(message)s, stats = %(stats)s, pid = %(pid)s, log_tail = %(log_tail)s
"""
FINISH_RUN = _SET_RUN_END + " WHERE id = %(run_id)s AND status = 'running'\n"

INSERT_SPIDER_RUN = """
INSERT INTO spider_runs (run_id, job, spider, args, settings, status, started_at, slot_at)
VALUES (%(run_id)s, %(job)s, %(spider)s, %(args)s, %(settings)s, 'running', %(now)s, %(slot_at)s)
RETURNING id
"""
SET_SPIDER_RUN_PID = "UPDATE spider_runs SET pid = %(pid)s WHERE id = %(id)s"
# Written (and committed) before schedule.json is sent: where a remote crawl goes, under which job id.
SET_SPIDER_RUN_REMOTE = """
UPDATE spider_runs SET node = %(node)s, remote_jobid = %(remote_jobid)s, log_url = %(log_url)s
 WHERE id = %(id)s AND status = 'running'
"""
# RETURNING the baseline's verdict on a success (sql/017's trigger judges it as it is written).
FINISH_SPIDER_RUN = _SET_SPIDER_RUN_RESULT + " WHERE id = %(id)s AND status = 'running' RETURNING suspect\n"

# Replaying the local journal (runs made while PostgreSQL was unreachable or refused writes).
# A journaled end also replaces a 'stale' verdict: another daemon may have failed the run as
# stale before this journal could be written, and the journal knows what really happened.
REPLAY_FINISH_SPIDER_RUN = (
    _SET_SPIDER_RUN_RESULT + " WHERE id = %(id)s AND (status = 'running' OR failure = 'stale')\n"
)
REPLAY_FINISH_RUN = _SET_RUN_END + " WHERE id = %(run_id)s AND (status = 'running' OR error = %(stale_message)s)\n"
INSERT_JOURNALED_RUN = """
INSERT INTO scheduler_state (last_run_at, spider_count, status, created_at, updated_at, finished_at,
                             error, owner, journal_id)
VALUES (%(started_at)s, %(spider_count)s, %(status)s, %(started_at)s, %(finished_at)s, %(finished_at)s,
        %(error)s, %(owner)s, %(journal_id)s)
ON CONFLICT (journal_id) DO NOTHING
RETURNING id
"""
INSERT_JOURNALED_SPIDER_RUN = """
INSERT INTO spider_runs (run_id, job, spider, args, settings, status, failure, started_at, finished_at,
                         exit_code, finish_reason, items_scraped, error_count, message, stats, pid, log_tail,
                         node, remote_jobid, log_url)
VALUES (%(run_id)s, %(job)s, %(spider)s, %(args)s, %(settings)s, %(status)s, %(failure)s, %(started_at)s,
        %(finished_at)s, %(exit_code)s, %(finish_reason)s, %(items_scraped)s, %(error_count)s, %(message)s,
        %(stats)s, %(pid)s, %(log_tail)s, %(node)s, %(remote_jobid)s, %(log_url)s)
RETURNING id
"""
# A run of the offline fail-safe still under way when PostgreSQL is back and the lock ours again:
# written 'running', its lease fresh, and from then on ended in PostgreSQL (daemon/loop/runs.py).
# Its journal id is written too, so the journal it came from, replayed again, adds nothing.
INSERT_ADOPTED_RUN = """
INSERT INTO scheduler_state (last_run_at, spider_count, status, created_at, updated_at, owner, heartbeat_at,
                             journal_id)
VALUES (%(started_at)s, %(spider_count)s, 'running', %(started_at)s, %(started_at)s, %(owner)s, clock_timestamp(),
        %(journal_id)s)
ON CONFLICT (journal_id) DO NOTHING
RETURNING id
"""

# Housekeeping jobs.
RECORD_JOB_RUN = """
INSERT INTO job_runs (job, started_at, finished_at, status, message)
VALUES (%(job)s, %(started_at)s, %(finished_at)s, %(status)s, %(message)s)
"""
DELETE_HISTORY_BATCH = """
WITH doomed AS (
    SELECT id FROM scheduler_state
     WHERE last_run_at < %(cutoff)s AND status <> 'running'
     ORDER BY id LIMIT %(batch)s),
gone_spiders AS (DELETE FROM spider_runs WHERE run_id IN (SELECT id FROM doomed) RETURNING 1),
gone_runs AS (DELETE FROM scheduler_state WHERE id IN (SELECT id FROM doomed) RETURNING 1)
SELECT (SELECT count(*) FROM gone_runs), (SELECT count(*) FROM gone_spiders)
"""
# history_retention also keeps the jobs' own records and the taken run-now and cancel requests in bounds.
DELETE_OLD_JOB_RUNS = "DELETE FROM job_runs WHERE started_at < %(cutoff)s"
DELETE_OLD_RUN_REQUESTS = "DELETE FROM run_requests WHERE taken_at < %(cutoff)s"
DELETE_OLD_CANCEL_REQUESTS = "DELETE FROM cancel_requests WHERE taken_at < %(cutoff)s"
# Per job (overdue_check alerts on the jobs the daemon runs).
LAST_SUCCESSES = """
SELECT s.job, ok.started_at
  FROM unnest(%(spiders)s::text[]) WITH ORDINALITY AS s (job, position)
  LEFT JOIN LATERAL (SELECT r.started_at FROM spider_runs r
                      WHERE r.job >= s.job AND r.job <= s.job AND r.status = 'completed'
                      ORDER BY r.job, r.id DESC LIMIT 1) ok ON true  -- the range: see SPIDER_HISTORY
 ORDER BY s.position
"""
# When each job was last alerted overdue (the outbox, sql/017): an episode told before the job's last
# success is over, one told after it still open, also for a daemon that did not tell it (issue 22).
LAST_TOLD = """
SELECT job, max(created_at) FROM alert_outbox WHERE kind = %(kind)s AND job = ANY(%(jobs)s) GROUP BY job
"""
# Jobs with a crawl under way (at most one each: sql/016's index), which the overdue check leaves alone.
RUNNING_JOBS = "SELECT job FROM spider_runs WHERE status = 'running'"
FAILED_SPIDER_RUNS_SINCE = """
SELECT id, job, failure, message, spider FROM spider_runs
 WHERE status = 'failed' AND id > %(after_id)s
   AND (%(since)s::timestamptz IS NULL OR finished_at > %(since)s)
 ORDER BY id
"""
SPIDERS_SCRAPING_ZERO = "SELECT job, last_success_at, previous_items, spider FROM jobs_scraping_zero"
LAST_JOB_RUNS_DETAIL = "SELECT DISTINCT ON (job) job, started_at, status FROM job_runs ORDER BY job, id DESC"
HTTPCACHE_COUNTS = """
SELECT COALESCE(sum((stats->>'httpcache/hit')::bigint), 0), COALESCE(sum((stats->>'httpcache/miss')::bigint), 0)
  FROM (SELECT stats FROM spider_runs WHERE stats IS NOT NULL ORDER BY id DESC LIMIT %(latest)s) latest
"""
