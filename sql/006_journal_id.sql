-- Runs recorded while PostgreSQL was unreachable reach the table later, from the daemon's local
-- journal; their id makes that replay idempotent (a journal replayed twice is written once).
ALTER TABLE scheduler_state ADD COLUMN journal_id UUID UNIQUE;
