-- Alerts of an episode (fields.episode: a Scrapyd node's outage and return, a job's missed slots
-- since its last kept one) are written only when the newest alert of the same episode is of another
-- kind (daemon/telemetry/outbox.py ADD_ALERT): a daemon restarted or taking over mid-episode does
-- not tell it again. This index finds that newest alert without reading the whole outbox.
CREATE INDEX alert_outbox_episode ON alert_outbox ((fields->>'episode'), id) WHERE fields ? 'episode';
