"""Who gets a free slot (daemon/plan/slots.py), table-driven."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.plan.decision import Cadence, SpiderHistory, decide_jobs
from daemon.plan.slots import take_slots, waiting
from tests.unit.fakes import T0

EVERY = Cadence(timedelta(hours=1), timedelta(minutes=5))
# a: never ran; b: 3 intervals overdue; c: 1 interval overdue; d: not due.
PLAN = decide_jobs([SpiderHistory("a"), SpiderHistory("b", T0 - timedelta(hours=4)),
                    SpiderHistory("c", T0 - timedelta(hours=2)), SpiderHistory("d", T0 - timedelta(minutes=10))],
                   T0, {}, EVERY)  # fmt: skip


@pytest.mark.parametrize("running, asked, expected", [
    ((), (), ("a", "b", "c")),                      # most overdue first, never-run ahead
    (("a",), (), ("b", "c")),                       # a crawl under way is never started again
    (("b", "c"), ("d",), ("a", "d")),               # a run-now request comes after the due
    ((), ("c", "d"), ("a", "b", "c", "d")),         # asked and due: once, in its due place
    (("d",), ("d",), ("a", "b", "c")),              # asked while running: waits for its end
])  # fmt: skip
def test_the_jobs_waiting_for_a_slot(running, asked, expected):
    assert waiting(PLAN, running, asked) == expected


@pytest.mark.parametrize("free, expected", [
    (None, ("a", "b", "c")), (0, ()), (2, ("a", "b")), (5, ("a", "b", "c")), (-1, ()),
])  # fmt: skip
def test_the_free_slots_go_to_the_first_waiting(free, expected):
    assert take_slots(("a", "b", "c"), free) == expected
