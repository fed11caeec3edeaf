-- Calendar schedules (README: "Calendar schedules", issue 21): the slot a crawl covers, the freshness
-- ledger, and each published job's calendar with the moment its schedule was first published.

-- The slot of a calendar job's crawl (a UTC instant of its cron expression); NULL for an interval
-- job's crawl, a run-now, and every row written before calendars existed.
ALTER TABLE spider_runs ADD COLUMN slot_at TIMESTAMP WITH TIME ZONE;
-- Never two crawls for one slot: a second crawl of a job for a slot already covered (completed) or
-- being covered (running) is refused by PostgreSQL, whatever a daemon believes. A failed crawl
-- leaves its slot owed, so its retry may take the same slot.
CREATE UNIQUE INDEX spider_runs_one_crawl_per_slot ON spider_runs (job, slot_at)
    WHERE slot_at IS NOT NULL AND status IN ('running', 'completed');

-- The freshness ledger: one row per owed slot of a job (for an interval job, its due moment), written
-- once (the primary key: two daemons writing the same slot leave one row).
CREATE TABLE job_slots (
    job TEXT NOT NULL,
    slot_at TIMESTAMP WITH TIME ZONE NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('kept', 'missed', 'excused')),
    -- missed: daemon_down, db_down, the job's own failure kind (error, timeout, too_few_items,
    -- cancelled, interrupted, stale, lost), busy, too_late, clock_jump; excused: paused, outside_window
    cause TEXT CHECK ((state = 'kept') = (cause IS NULL)),
    run_id BIGINT,                          -- kept: the spider_runs row that covered the slot
    late_s DOUBLE PRECISION,                -- kept: how long after the slot its crawl started
    slots INTEGER NOT NULL DEFAULT 1 CHECK (slots >= 1),  -- a summary row stands for this many slots
    recorded_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (job, slot_at)
);
-- Freshness this month per job, and retention, read by when the slot was.
CREATE INDEX job_slots_slot_at ON job_slots (slot_at);

-- A published job's calendar (NULL: an interval job without a window):
-- {"cron": "0 8 * * 1-5" | null, "tz": "America/Bogota", "window": {"start": "07:00", "end": "22:00",
--  "days": [0, 1, 2, 3, 4] | null} | null, "catch_up_within_s": 43200 | null}
ALTER TABLE jobs ADD COLUMN calendar JSON;
-- When this calendar was first published as it is: slots are owed from here (a new or edited
-- calendar job waits for its first slot). Kept while the calendar stays the same across
-- publications and restarts, set anew when it changes.
ALTER TABLE jobs ADD COLUMN schedule_since TIMESTAMP WITH TIME ZONE;
