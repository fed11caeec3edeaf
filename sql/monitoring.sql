-- The design's four monitoring queries, verbatim. Not a migration (no NNN_ prefix): run it with
--   psql -U postgres -d jobsearchtools -f sql/monitoring.sql

-- Última ejecución exitosa
SELECT last_run_at, spider_count, status
FROM scheduler_state
WHERE status = 'completed'
ORDER BY last_run_at DESC
LIMIT 1;

-- Historial de ejecuciones (últimas 24 horas)
SELECT
    last_run_at,
    spider_count,
    status,
    EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - last_run_at))/3600 AS hours_ago
FROM scheduler_state
WHERE last_run_at > CURRENT_TIMESTAMP - INTERVAL '24 hours'
ORDER BY last_run_at DESC;

-- Contar ejecuciones por estado (último mes)
SELECT
    status,
    COUNT(*) as count,
    MIN(last_run_at) as first_run,
    MAX(last_run_at) as last_run
FROM scheduler_state
WHERE last_run_at > CURRENT_TIMESTAMP - INTERVAL '30 days'
GROUP BY status;

-- Verificar intervalos entre ejecuciones
SELECT
    last_run_at,
    LAG(last_run_at) OVER (ORDER BY last_run_at) as previous_run,
    EXTRACT(EPOCH FROM (
        last_run_at - LAG(last_run_at) OVER (ORDER BY last_run_at)
    ))/3600 AS hours_between
FROM scheduler_state
WHERE status = 'completed'
ORDER BY last_run_at DESC
LIMIT 10;
