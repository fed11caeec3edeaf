-- One row per spider per run: the per-spider result the guarantee is computed from.
CREATE TABLE spider_runs (
    id BIGSERIAL PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES scheduler_state (id) ON DELETE CASCADE,
    spider TEXT NOT NULL,
    status VARCHAR(50) NOT NULL,       -- 'running', 'completed', 'failed'
    failure VARCHAR(50),               -- why it failed: 'error' | 'timeout' (the spider's fault,
                                       -- retried with backoff), 'interrupted' | 'stale' (the
                                       -- daemon stopped or died; due again at once)
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE,
    exit_code INTEGER,
    finish_reason TEXT,                -- Scrapy's finish_reason from the crawl stats
    items_scraped INTEGER,
    error_count INTEGER,
    message TEXT,                      -- a short human explanation of the outcome
    stats JSONB,                       -- the crawl's stats as Scrapy collected them
    CONSTRAINT spider_runs_status_check CHECK (status IN ('running', 'completed', 'failed')),
    CONSTRAINT spider_runs_failure_check
        CHECK (failure IN ('error', 'timeout', 'interrupted', 'stale')),
    CONSTRAINT spider_runs_failure_iff_failed CHECK ((status = 'failed') = (failure IS NOT NULL)),
    CONSTRAINT spider_runs_one_per_run UNIQUE (run_id, spider)
);

-- The decision reads, per spider, the newest row of each kind by insertion order.
CREATE INDEX spider_runs_spider_id ON spider_runs (spider, id DESC);
CREATE INDEX spider_runs_spider_success ON spider_runs (spider, id DESC) WHERE status = 'completed';
CREATE INDEX spider_runs_running ON spider_runs (run_id) WHERE status = 'running';
