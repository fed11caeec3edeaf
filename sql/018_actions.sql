-- The audit of actions (issue #23): every run-now, pause, resume and cancel, from the page, its
-- JSON API or the command line, one row each, whatever its result. Written by whoever acts
-- (daemon/ask/actions.py), read by the job's page and `status --json`, pruned like the history.
CREATE TABLE actions (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP WITH TIME ZONE NOT NULL,
    action TEXT NOT NULL,            -- run-now | pause | resume | cancel
    job TEXT NOT NULL,
    detail TEXT,                     -- pause: until when ('until resumed' or an ISO time)
    actor TEXT NOT NULL,             -- the page's user, or 'cli' with the OS user ('cli:alice')
    source TEXT NOT NULL,            -- page | api | cli
    address TEXT,                    -- the client's address (NULL from the command line)
    result TEXT NOT NULL,            -- done | nothing (not running, not paused) | refused
    message TEXT NOT NULL            -- the one-line notice the actor was shown
);
CREATE INDEX actions_job ON actions (job, id);
CREATE INDEX actions_at ON actions (at);
