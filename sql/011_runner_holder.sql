-- Who took the runner lock last (one row at most). The advisory lock itself says nothing about
-- who held it before: a daemon that was running spiders while PostgreSQL was unreachable holds no
-- lock at all until it reconnects. A daemon that takes the lock reads this row first; when its
-- previous holder may still be alive (another machine, or a live process on this one), it waits
-- before running anything, so that holder can notice it lost the lock and stop its crawls.
-- A holder that stops cleanly deletes its row.
CREATE TABLE runner_holder (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    owner TEXT NOT NULL,
    acquired_at TIMESTAMP WITH TIME ZONE NOT NULL
);
