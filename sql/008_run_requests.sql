-- `python -m daemon run-now [SPIDER ...]` asks the running daemon for a run through this table
-- (and a NOTIFY on channel scheduler_run_now, so the request is picked up at once). A request
-- survives a restart of the daemon: whoever holds the runner lock next takes it.
CREATE TABLE run_requests (
    id SERIAL PRIMARY KEY,
    spiders TEXT[],                    -- NULL: every spider
    requested_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    taken_at TIMESTAMP WITH TIME ZONE  -- when the runner took it into a run
);
CREATE INDEX run_requests_pending ON run_requests (id) WHERE taken_at IS NULL;
