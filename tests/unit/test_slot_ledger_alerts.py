"""A calendar job's missed slots are alerted once per episode (issues 21 and 22): the ledger tells
the notifier when it first writes missed rows, and again only after the job kept a slot."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from daemon.loop.slot_ledger import SlotLedger
from daemon.records.ledger import SlotRecord

T0 = datetime(2027, 1, 10, 13, tzinfo=timezone.utc)
DAY = timedelta(days=1)


class LedgerStore:
    """The loop's collaborator: every row written is new, and the last kept slot is what the test says."""

    def __init__(self) -> None:
        self.kept: datetime | None = None

    def record_counted(self, job, rows, now) -> int:  # noqa: ANN001
        return len(rows)

    def last_kept_slot(self, job):  # noqa: ANN001
        return None if self.kept is None else (self.kept, 1, 0.0)


def missed(slot: datetime, cause: str = "daemon_down") -> tuple[SlotRecord, int]:
    return SlotRecord(slot, "missed", cause), 1


def told_after(*writes) -> list[tuple[str, dict]]:
    alerts: list[tuple[str, dict]] = []
    store = LedgerStore()
    ledger = SlotLedger(alert=lambda kind, text, **fields: alerts.append((text, fields)))
    for kept, rows in writes:
        store.kept = kept
        ledger._write(store, "news", rows, T0)
    return alerts


def test_missed_slots_written_twice_in_one_episode_are_told_once_with_their_count_and_causes():
    alerts = told_after((T0, [missed(T0 + DAY), missed(T0 + 2 * DAY)]), (T0, [missed(T0 + 3 * DAY, "error")]))
    [(text, fields)] = alerts
    assert text == ("Job news missed 2 slot(s) (daemon_down) since 2027-01-11 13:00 UTC; its last kept slot was "
                    "2027-01-10 13:00 UTC")  # fmt: skip
    assert fields["job"] == "news" and fields["slots"] == 2 and fields["level"] == "warning"


def test_a_slot_kept_ends_the_episode_so_the_next_missed_slot_is_told_again():
    alerts = told_after((None, [missed(T0)]), (T0 + DAY, [missed(T0 + 2 * DAY, "busy")]))
    assert [text.split(";")[1].strip() for text, _ in alerts] == [
        "it has kept no slot yet", "its last kept slot was 2027-01-11 13:00 UTC"]


def test_slots_excused_by_the_window_or_a_pause_are_not_told():
    excused = [(SlotRecord(T0, "excused", "outside_window"), 1), (SlotRecord(T0 + DAY, "excused", "paused"), 1)]
    assert told_after((None, excused)) == []


def test_each_told_episode_names_itself_by_the_job_and_its_last_kept_slot_so_a_new_daemon_does_not_tell_it_again():
    """Two daemons (a restart) tell one open episode with one name; the outbox writes it once
    (tests/integration/test_alert_outbox.py). A slot kept since gives the next episode a new name."""
    first = told_after((T0, [missed(T0 + DAY)]))
    restarted = told_after((T0, [missed(T0 + 2 * DAY)]))
    later = told_after((T0 + 2 * DAY, [missed(T0 + 3 * DAY)]))
    assert first[0][1]["episode"] == restarted[0][1]["episode"] == "slots news since 2027-01-10T13:00:00+00:00"
    assert later[0][1]["episode"] == "slots news since 2027-01-12T13:00:00+00:00"


def test_a_scrapyd_node_s_outage_and_return_are_one_episode_named_after_the_node():
    from threading import Event

    from daemon.settings.secret import Secret
    from daemon.telemetry.notify import Notifier

    told: list[tuple[str, dict]] = []
    notifier = Notifier(Secret(""), Secret(""), Event())
    notifier.alert = lambda kind, text, **fields: told.append((kind, fields))  # type: ignore[method-assign]
    notifier.node("10.0.0.7:6800", False, "scrapyd node 10.0.0.7:6800: connection refused")
    notifier.node("10.0.0.7:6800", True, "")
    assert [(kind, fields["episode"]) for kind, fields in told] == [("node_lost", "node 10.0.0.7:6800"),
                                                                     ("node_back", "node 10.0.0.7:6800")]
