-- One row per spider run, exactly as the design has it, plus when it finished and why it failed.
-- last_run_at is when the run started; status goes 'running' -> 'completed' | 'failed'.
CREATE TABLE scheduler_state (
    id SERIAL PRIMARY KEY,
    last_run_at TIMESTAMP WITH TIME ZONE NOT NULL,
    spider_count INTEGER NOT NULL,
    status VARCHAR(50) NOT NULL,  -- 'running', 'completed', 'failed'
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at TIMESTAMP WITH TIME ZONE,
    error TEXT,
    CONSTRAINT scheduler_state_status_check CHECK (status IN ('running', 'completed', 'failed'))
);

CREATE INDEX idx_scheduler_state_last_run_at ON scheduler_state (last_run_at);

-- At most one run may be 'running' at any moment, whatever the daemons believe.
CREATE UNIQUE INDEX scheduler_state_one_running ON scheduler_state ((status)) WHERE status = 'running';
