-- Alerts that are never lost (issue 22): one row per alert in alert_outbox, one row per channel it
-- went to (or is still to go to) in alert_deliveries. The lock holder's notifier delivers them in
-- order, each channel at most once once it acknowledged, retrying with backoff for at least 24 h;
-- a restarted daemon or the next holder carries on from these rows.
CREATE TABLE alert_outbox (
    id BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    kind TEXT NOT NULL,           -- 'spider_failed', 'overdue', 'zero_items', 'jobs_file_invalid', ...
    job TEXT,                     -- the job it is about (its `notify` tags choose the channels); NULL: every channel
    level TEXT NOT NULL,          -- 'error' | 'warning' | 'info'
    text TEXT NOT NULL,           -- the message people read
    fields JSONB NOT NULL DEFAULT '{}',  -- more of it for machines (the webhook's JSON body): spider, failure, ...
    spool_key TEXT UNIQUE,        -- an alert that waited in the state directory: written once
    spider_run_id BIGINT,         -- the crawl that caused it: each kind of alert of a crawl is written once
    done_at TIMESTAMP WITH TIME ZONE  -- every chosen channel took it, or was given up on
);
CREATE UNIQUE INDEX alert_outbox_once_per_crawl ON alert_outbox (spider_run_id, kind);
CREATE INDEX alert_outbox_open ON alert_outbox (id) WHERE done_at IS NULL;

CREATE TABLE alert_deliveries (
    alert_id BIGINT NOT NULL REFERENCES alert_outbox (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,        -- a digest of the channel's URL (never the URL), or 'webhook'
    name TEXT NOT NULL,           -- what may be shown: scheme, and host where it is a server's name
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TIMESTAMP WITH TIME ZONE,
    next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    delivered_at TIMESTAMP WITH TIME ZONE,
    given_up_at TIMESTAMP WITH TIME ZONE,
    last_error TEXT,              -- why the last attempt failed, without the URL
    PRIMARY KEY (alert_id, channel)
);

-- A failed crawl's alert, and a recovery notice when a job that was failing succeeds, are written by
-- the statement that records the crawl, in its transaction: the loop's, a take-over's (stale), or the
-- journal's replay after PostgreSQL was down. `fields.failures` is the job's failure streak: the
-- notifier delivers a failure only from the job's `alert_after`-th in a row, and a recovery only when
-- the streak it ends had been alerted.
CREATE FUNCTION alert_on_crawl() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_success BIGINT;
    failures INTEGER;
    first_failed TIMESTAMP WITH TIME ZONE;
    down INTEGER;
BEGIN
    SELECT max(id) INTO last_success FROM spider_runs
     WHERE job = NEW.job AND status = 'completed' AND id < NEW.id;
    SELECT count(*), min(started_at) INTO failures, first_failed FROM spider_runs
     WHERE job = NEW.job AND status = 'failed' AND id > coalesce(last_success, 0) AND id <= NEW.id;
    IF NEW.status = 'failed' THEN
        INSERT INTO alert_outbox (kind, job, level, text, fields, spider_run_id)
        VALUES ('spider_failed', NEW.job, 'error',
                format('Job %s failed (%s): %s', NEW.job, NEW.failure, coalesce(NEW.message, 'no message'))
                || CASE WHEN failures > 1 THEN format(' (%s failures in a row, since %s)', failures,
                                                       to_char(first_failed AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'))
                        ELSE '' END,
                jsonb_build_object('spider', NEW.spider, 'failure', NEW.failure, 'failures', failures), NEW.id)
        ON CONFLICT (spider_run_id, kind) DO NOTHING;
    ELSIF failures > 0 THEN
        down := extract(epoch FROM coalesce(NEW.finished_at, now()) - first_failed)::integer;
        INSERT INTO alert_outbox (kind, job, level, text, fields, spider_run_id)
        VALUES ('recovered', NEW.job, 'info',
                format('Job %s recovered after %s failure%s, down %s h %s min', NEW.job, failures,
                       CASE WHEN failures = 1 THEN '' ELSE 's' END, down / 3600, down % 3600 / 60),
                jsonb_build_object('spider', NEW.spider, 'failures', failures, 'down_seconds', down), NEW.id)
        ON CONFLICT (spider_run_id, kind) DO NOTHING;
    END IF;
    IF NEW.status = 'completed' AND NEW.suspect IS NOT NULL AND NOT EXISTS (
        -- once per episode: the job's previous success was not suspect
        SELECT 1 FROM (SELECT suspect FROM spider_runs WHERE job = NEW.job AND status = 'completed' AND id < NEW.id
                        ORDER BY id DESC LIMIT 1) previous WHERE previous.suspect IS NOT NULL) THEN
        INSERT INTO alert_outbox (kind, job, level, text, fields, spider_run_id)
        VALUES ('suspect', NEW.job, 'warning',
                format('Job %s succeeded but looks wrong: %s', NEW.job, NEW.suspect),
                jsonb_build_object('spider', NEW.spider, 'items', NEW.items_scraped), NEW.id)
        ON CONFLICT (spider_run_id, kind) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER spider_runs_alert
    AFTER INSERT OR UPDATE OF status ON spider_runs
    FOR EACH ROW WHEN (NEW.status IN ('failed', 'completed'))
    EXECUTE FUNCTION alert_on_crawl();

-- Verdicts against the job's own baseline: a success whose items fall below `items_below` times the
-- median of the job's last 20 successes, or whose duration exceeds `duration_above` times theirs,
-- is `suspect` (the reason in words). It still counts as a success for the schedule (min_items is
-- the hard floor). Fewer than 5 earlier successes judge nothing. The thresholds are the job's
-- (jobs.baseline, published from the jobs file): NULL the defaults, JSON false off.
ALTER TABLE spider_runs ADD COLUMN suspect TEXT;  -- why this success looks wrong, or NULL
ALTER TABLE jobs ADD COLUMN baseline JSONB;       -- {"items_below": 0.5, "duration_above": 3.0}, false, or NULL

CREATE FUNCTION judge_against_baseline() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rule JSONB;
    items_below FLOAT8;
    duration_above FLOAT8;
    earlier INTEGER;
    usual_items FLOAT8;
    usual_seconds FLOAT8;
    seconds FLOAT8;
BEGIN
    SELECT baseline INTO rule FROM jobs WHERE name = NEW.job;
    IF rule = 'false'::jsonb THEN
        RETURN NEW;
    END IF;
    items_below := coalesce((rule->>'items_below')::float8, 0.5);
    duration_above := coalesce((rule->>'duration_above')::float8, 3.0);
    SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY items_scraped),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
      INTO earlier, usual_items, usual_seconds
      FROM (SELECT items_scraped, started_at, finished_at FROM spider_runs
             WHERE job = NEW.job AND status = 'completed' AND id < NEW.id AND finished_at IS NOT NULL
             ORDER BY id DESC LIMIT 20) recent;
    IF earlier < 5 THEN
        RETURN NEW;
    END IF;
    seconds := extract(epoch FROM coalesce(NEW.finished_at, now()) - NEW.started_at);
    IF coalesce(NEW.items_scraped, 0) < items_below * usual_items THEN
        NEW.suspect := format('%s items; usual %s (median of %s)', coalesce(NEW.items_scraped, 0),
                              trim(to_char(round(usual_items), 'FM999,999,999,999')), earlier);
    ELSIF usual_seconds > 0 AND seconds > duration_above * usual_seconds THEN
        NEW.suspect := format('took %s s; usual %s s (median of %s)', round(seconds::numeric, 1),
                              round(usual_seconds::numeric, 1), earlier);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER spider_runs_judge
    BEFORE INSERT OR UPDATE OF status ON spider_runs
    FOR EACH ROW WHEN (NEW.status = 'completed')
    EXECUTE FUNCTION judge_against_baseline();
