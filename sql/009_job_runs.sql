-- One row per run of a housekeeping job (history_retention, overdue_check, ...). The `schedule`
-- library remembers nothing across restarts; this table is what a restarted daemon reads to run an
-- overdue job at once rather than a whole period later.
CREATE TABLE job_runs (
    id BIGSERIAL PRIMARY KEY,
    job TEXT NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
    status VARCHAR(50) NOT NULL CHECK (status IN ('completed', 'failed')),
    message TEXT
);
CREATE INDEX job_runs_job_id ON job_runs (job, id DESC);
