-- The crawl's process id, so an operator (and the fault tests) can match a row to a process.
ALTER TABLE spider_runs ADD COLUMN pid INTEGER;
