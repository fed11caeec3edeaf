"""The alerts' outbox in PostgreSQL (sql/017_alert_outbox.sql): an alert is a row before anyone is
told, and each channel's delivery is a row with its attempts, so an alert that cannot be delivered
now is delivered later, in order, and not again to a channel whose delivery was recorded.

- A failed crawl's alert is written by a trigger on spider_runs, in the transaction that records the
  failure (the loop's, a take-over's, or the journal's replay after PostgreSQL was down).
- Other alerts (overdue, zero items, the jobs file, the cache) are added here by the notifier; while
  PostgreSQL is down they wait in memory and are written when it answers again. An alert of an
  episode (a Scrapyd node lost then back, a job's missed slots) names it (`fields.episode`) and is
  written only when the episode's newest alert is of another kind, whichever daemon wrote it.
- `step` is one pass: it writes what waits, then reads the open alerts (oldest first) and handles
  each in a transaction of its own: it locks the alert's row (`FOR UPDATE SKIP LOCKED`: two daemons
  never hold the same alert; one held elsewhere makes its channels' later alerts wait), sends it to
  its due channels and records the attempts, then commits before the next alert is sent. A channel
  that fails waits, with backoff (RETRY_FIRST doubling up to RETRY_MAX), and the later alerts for it
  wait behind (order kept); after GIVE_UP_AFTER it is given up (at least 24 h of retries).
- At least once, not exactly once: a delivery is recorded by the commit right after its send, so a
  PostgreSQL that dies (or a connection that breaks) between a receiver's acknowledgement and that
  commit leaves the alert open, and it is sent again once PostgreSQL answers. That window is the
  only way a channel gets an alert twice; an error on a later alert never undoes an earlier record.

Delivered only by the daemon holding the runner lock (`delivers`): a standby writes the alerts it
raises and leaves them to the holder; a new holder is woken at once and carries on from the rows.
Owned by the notifier's thread (daemon/telemetry/notify.py), with its own connection: the loop never waits on
a receiver. Channel names (scheme, host where it is a server's name) are all it ever logs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import structlog

from daemon.telemetry.alert_spool import AlertSpool
from daemon.telemetry.channels import Channel, ChannelsError, chosen, describe, send
from daemon.settings.notify_config import NotifyConfig
from daemon.settings.secret import Secret

log = structlog.get_logger("daemon.notify")

RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=15)
GIVE_UP_AFTER = timedelta(hours=24)  # counted from the alert's creation: retried at least this long
BATCH = 100  # open alerts taken in one pass
WEBHOOK = "webhook"  # the channel key of ALERT_WEBHOOK_URL

# An alert of an episode (fields.episode: a node's outage and return, a job's missed slots since
# its last kept one) is written only if the newest alert of that episode is of another kind: a
# daemon restarted, or taking over, mid-episode does not tell it again (sql/021's index).
ADD_ALERT = """
INSERT INTO alert_outbox (created_at, kind, job, level, text, fields, spool_key)
SELECT %(created_at)s, %(kind)s, %(job)s, %(level)s, %(text)s, %(fields)s, %(key)s
 WHERE %(episode)s::text IS NULL
    OR (SELECT kind FROM alert_outbox WHERE fields->>'episode' = %(episode)s ORDER BY id DESC LIMIT 1)
       IS DISTINCT FROM %(kind)s
ON CONFLICT (spool_key) DO NOTHING
"""
OPEN_ALERTS = """
SELECT id, kind, job, level, text, fields, created_at < now() - %(give_up)s FROM alert_outbox
 WHERE done_at IS NULL ORDER BY id LIMIT %(batch)s
"""
# One alert's transaction begins here: no row when another daemon holds the alert, or closed it since.
LOCK_ALERT = """
SELECT id FROM alert_outbox WHERE id = %(id)s AND done_at IS NULL FOR UPDATE SKIP LOCKED
"""
IS_OPEN = "SELECT done_at IS NULL FROM alert_outbox WHERE id = %(id)s"
DELIVERIES_OF = """
SELECT channel, delivered_at IS NOT NULL, given_up_at IS NOT NULL, next_attempt_at <= now()
  FROM alert_deliveries WHERE alert_id = %(id)s
"""
RECORD_ATTEMPT = """
INSERT INTO alert_deliveries AS d (alert_id, channel, name, attempts, last_attempt_at, next_attempt_at, delivered_at,
                                   given_up_at, last_error)
VALUES (%(alert_id)s, %(channel)s, %(name)s, 1, now(), now() + %(wait)s, CASE WHEN %(ok)s THEN now() END,
        CASE WHEN %(give_up)s THEN now() END, %(error)s)
ON CONFLICT (alert_id, channel) DO UPDATE
   SET attempts = d.attempts + 1, last_attempt_at = now(), next_attempt_at = now() + least(%(wait)s * 2 ^ least(d.attempts, 20), %(cap)s),
       delivered_at = EXCLUDED.delivered_at, given_up_at = EXCLUDED.given_up_at, last_error = EXCLUDED.last_error,
       name = EXCLUDED.name
"""
CLOSE_ALERT = "UPDATE alert_outbox SET done_at = now() WHERE id = %(id)s"
UNDELIVERED = """
SELECT d.name, count(*) FROM alert_deliveries d JOIN alert_outbox o ON o.id = d.alert_id
 WHERE o.done_at IS NULL AND d.delivered_at IS NULL AND d.given_up_at IS NULL GROUP BY d.name ORDER BY d.name
"""


class Outbox:
    def __init__(self, connect: Callable[[], Any], channels: NotifyConfig | None, webhook: Secret,
                 tags_of: Callable[[str], tuple[str, ...]], post: Callable[[str, bytes], str | None],
                 metrics: Any = None, alert_after_of: Callable[[str], int] = lambda job: 1,
                 public_url: Secret = Secret(""), spool: AlertSpool | None = None,
                 delivers: Callable[[], bool] = lambda: True) -> None:  # fmt: skip
        self.connect = connect
        # The configuration and its channels as one pair, replaced whole on a reload (`use`): a pass
        # takes it once, so its channels' indexes always match the configuration it sends with.
        self._channels_of: tuple[NotifyConfig | None, tuple[Channel, ...] | None] = (channels, None)
        self.webhook = webhook
        self.tags_of = tags_of
        self.post = post
        self.waiting: list[dict[str, Any]] = []  # alerts not yet written (PostgreSQL was down)
        self._conn: Any = None
        self.metrics = metrics  # /metrics: scheduler_alerts_undelivered per channel
        self.alert_after_of = alert_after_of  # a job's `alert_after`: failures in a row before it is alerted
        self.public_url = public_url.reveal().rstrip("/")  # SCHEDULER_PUBLIC_URL: alerts link the job's page
        self._counted: set[str] = set()  # the channels whose count is on /metrics
        self.spool = spool  # where alerts wait while PostgreSQL is down (the state directory)
        self.delivers = delivers  # the daemon's: it holds the runner lock (a standby only writes its alerts)
        self._standing_by = False

    def add(self, kind: str, job: str | None, level: str, text: str, created_at: Any, fields: dict[str, Any]) -> None:
        episode = fields.get("episode")
        self.waiting.append({"kind": kind, "job": job, "level": level, "text": text, "created_at": created_at,
                             "fields": json.dumps(fields, default=str), "key": os.urandom(16).hex(),
                             "episode": None if episode is None else str(episode)})  # fmt: skip

    def step(self) -> int:
        """One pass; the number of deliveries tried. PostgreSQL down: nothing lost, tried next pass."""
        try:
            conn = self._connection()
            spooled = self.spool.take() if self.spool is not None else []
            if spooled or self.waiting:
                with _transaction(conn) as cur:
                    for alert in spooled + self.waiting:
                        cur.execute(ADD_ALERT, {"episode": None, **alert})  # a spool from before episodes
                self.waiting.clear()
                if self.spool is not None:
                    self.spool.clear()
            if not self.delivers():
                if not self._standing_by:
                    log.info("alert_delivery_left_to_lock_holder",
                             message="Alerts are delivered by the scheduler holding the runner lock; this one "
                                     "does not hold it (now)")  # fmt: skip
                self._standing_by = True
                return 0
            self._standing_by = False
            tried = self._deliver(conn)
            if tried and self.metrics is not None and self.metrics.registry is not None:
                self._count()
            return tried
        except Exception as exc:  # noqa: BLE001 (psycopg2's errors, a sender's surprise: the next pass tries again)
            if self.spool is not None and self.waiting:
                try:
                    self.spool.append(self.waiting)
                    self.waiting.clear()
                except OSError as spool_error:  # kept in memory then, as without a state directory
                    log.error("alert_spool_failed", error=type(spool_error).__name__)
            log.warning("alert_outbox_unavailable", error=type(exc).__name__, waiting=len(self.waiting))
            self._drop_connection()
            return 0

    def undelivered(self) -> list[tuple[str, int]]:
        """(channel name, alerts waiting for it): for the page and /metrics."""
        with self._connection().cursor() as cur:
            cur.execute(UNDELIVERED)
            return [(name, int(n)) for name, n in cur.fetchall()]

    def _count(self) -> None:
        counts = dict(self.undelivered())
        for name in self._counted | counts.keys():
            self.metrics.alerts_undelivered.labels(name).set(counts.get(name, 0))
        self._counted |= counts.keys()

    def close(self) -> None:
        self._drop_connection()

    # ----------------------------------------------------------------- one pass
    def use(self, config: NotifyConfig, channels: tuple[Channel, ...]) -> None:
        """A reloaded configuration (SIGHUP, or its file changed), already described: from the next alert on."""
        self._channels_of = (config, channels)

    def _targets(self, config: NotifyConfig | None,
                 channels: tuple[Channel, ...]) -> list[tuple[str, str, int | None, tuple[str, ...]]]:  # fmt: skip
        """(key, name, index in the configuration or None for the webhook, tags) of every channel."""
        found = [(c.key, c.name, i, c.tags) for i, c in enumerate(channels)]
        if self.webhook:
            from daemon.telemetry.notify import where

            found.append((WEBHOOK, f"webhook {where(self.webhook.reveal())}", None, ()))
        return found

    def _deliver(self, conn: Any) -> int:
        """Each open alert in a transaction of its own, committed right after its sends: an error on
        one alert (or PostgreSQL gone) undoes nothing recorded for the alerts before it."""
        with _transaction(conn) as cur:
            cur.execute(OPEN_ALERTS, {"give_up": GIVE_UP_AFTER, "batch": BATCH})
            alerts = cur.fetchall()
        if not alerts:
            return 0
        config, channels = self._channels_of
        if channels is None:
            try:
                channels = describe(config) if config is not None else ()
            except ChannelsError:
                channels = ()  # checked at start: a file Apprise cannot read never got this far
            if self._channels_of[0] is config:  # not replaced meanwhile
                self._channels_of = (config, channels)
        targets = self._targets(config, channels)
        blocked: set[str] = set()  # channels an earlier alert still waits for: later ones wait behind
        tried = 0
        for alert in alerts:
            with _transaction(conn) as cur:
                tried += self._deliver_one(cur, alert, config, targets, blocked)
        return tried

    def _deliver_one(self, cur: Any, alert: tuple[Any, ...], config: NotifyConfig | None,
                     targets: list[tuple[str, str, int | None, tuple[str, ...]]], blocked: set[str]) -> int:  # fmt: skip
        """One alert, its row locked by `cur`'s transaction: the number of channels tried."""
        alert_id, kind, job, level, text, fields, too_old = alert
        tags = self.tags_of(job) if job else ()
        mine = [t for t in targets if chosen(Channel(t[1], t[3]), tags)]
        cur.execute(LOCK_ALERT, {"id": alert_id})
        if cur.fetchone() is None:
            cur.execute(IS_OPEN, {"id": alert_id})
            still_open = cur.fetchone()
            if still_open is not None and still_open[0]:  # another daemon is sending it: its channels wait
                blocked.update(t[0] for t in mine)
            return 0
        if held(kind, fields, self.alert_after_of(job) if job else 1):
            cur.execute(CLOSE_ALERT, {"id": alert_id})
            log.info("alert_held", alert_id=alert_id, kind=kind, job=job, failures=fields.get("failures"))
            return 0
        cur.execute(DELIVERIES_OF, {"id": alert_id})
        rows = {key: (done, given_up, due) for key, done, given_up, due in cur.fetchall()}
        due = []
        for target in mine:
            done, given_up, ready = rows.get(target[0], (False, False, True))
            if done or given_up:
                continue
            if target[0] in blocked or not ready:
                blocked.add(target[0])
                continue
            due.append(target)
        if job and self.public_url:
            text = f"{text}\n{job_link(self.public_url, job)}"
        results = self._send(config, due, kind, job, level, text, fields)
        for (key, name, _, _), (ok, why) in zip(due, results):
            cur.execute(RECORD_ATTEMPT, {"alert_id": alert_id, "channel": key, "name": name, "ok": ok,
                                         "wait": RETRY_FIRST, "cap": RETRY_MAX, "give_up": not ok and too_old,
                                         "error": None if ok else why[:500]})  # fmt: skip
            rows[key] = (ok, not ok and too_old, False)
            if ok:
                log.info("alert_delivered", alert_id=alert_id, kind=kind, job=job, channel=name)
            else:
                blocked.add(key)
                log.warning("alert_failed", alert_id=alert_id, kind=kind, job=job, channel=name, error=why,
                            given_up=too_old)  # fmt: skip
        if all(any(rows.get(t[0], (False, False, True))[:2]) for t in mine):
            cur.execute(CLOSE_ALERT, {"id": alert_id})
        return len(due)

    def _send(self, config: NotifyConfig | None, due: list[tuple[str, str, int | None, tuple[str, ...]]], kind: str,
              job: str | None, level: str, text: str, fields: dict[str, Any]) -> list[tuple[bool, str]]:  # fmt: skip
        """One attempt per due channel, in `due`'s order: (delivered, why not)."""
        title = f"{job}: {kind}" if job else kind
        indexes = tuple(t[2] for t in due if t[2] is not None)
        got = {}
        if indexes and config is not None:
            got = {d.channel: (d.ok, d.why) for d in send(config, title, text, level=level, only=indexes)}
        results = []
        for _, _, index, _ in due:
            if index is None:
                body = json.dumps({"text": text, "kind": kind, "job": job, "level": level, **fields},
                                  default=str).encode()  # fmt: skip
                error = self.post(self.webhook.reveal(), body)
                results.append((error is None, error or ""))
            else:
                results.append(got.get(index, (False, "no answer from the sender")))
        return results

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        return self._conn

    def _drop_connection(self) -> None:
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()
        self._conn = None


def job_link(public_url: str, job: str) -> str:
    """The job's page under SCHEDULER_PUBLIC_URL, as the page spells its links (daemon/web/page.py's
    job_href: a name of dots only is encoded, or it would read as a path step)."""
    encoded = quote(job, safe="")
    return f"{public_url}/jobs/" + (encoded.replace(".", "%2E") if set(job) <= {"."} else encoded)


def held(kind: str, fields: dict[str, Any], alert_after: int) -> bool:
    """A failure before the job's `alert_after`-th in a row is not told, nor the recovery that ends a
    streak that was never told (the trigger counts the streak into `fields.failures`)."""
    if kind not in ("spider_failed", "recovered") or "failures" not in fields:
        return False
    return int(fields["failures"]) < alert_after


@contextlib.contextmanager
def _transaction(conn: Any) -> Iterator[Any]:
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True
