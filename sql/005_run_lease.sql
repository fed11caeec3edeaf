-- Who runs a run, and when it last proved alive (server time). While a run's lease is fresh, a
-- daemon that takes the runner lock waits instead of failing the run and starting its spiders:
-- the previous runner may still be stopping its crawls.
ALTER TABLE scheduler_state ADD COLUMN owner TEXT;
ALTER TABLE scheduler_state ADD COLUMN heartbeat_at TIMESTAMP WITH TIME ZONE;
