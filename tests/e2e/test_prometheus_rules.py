"""contrib/prometheus/: the real promtool checks the rules, the config and the rules' unit tests, and
every metric the rules read is one a real daemon exports (a renamed metric or label fails here)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from datetime import timedelta
from zoneinfo import ZoneInfo

from daemon.jobs.jobfile import JobDefaults, make_job
from daemon.plan.calendar import Calendar
from daemon.records.store import Store
from daemon.settings.config import Settings
from tests.conftest import free_port
from tests.helpers import utcnow, wait_for

pytestmark = pytest.mark.e2e

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"


def promtool() -> str:
    """The promtool binary: on PATH, or beside the venv's python (where tests/run.sh puts it)."""
    found = shutil.which("promtool") or shutil.which("promtool", path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get("REQUIRE_DOCKER") == "1" or os.environ.get("CI"):
        pytest.fail("promtool is missing, and CI must check contrib/prometheus/ (tests/run.sh unpacks it from "
                    "Debian's prometheus package)")  # fmt: skip
    pytest.skip("promtool is missing: bash tests/run.sh unpacks it from Debian's prometheus package")


def run_promtool(*args: str, cwd: Path = CONTRIB) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    print(result.stdout, result.stderr)
    return result


def expressions() -> str:
    """The rules' text without its comments: what PromQL and the annotations say."""
    lines = (CONTRIB / "alerts.yml").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", expressions(), flags=re.MULTILINE)


@pytest.mark.parametrize(
    "args",
    [("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml"), ("test", "rules", "alerts_test.yml")],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts_the_rules_the_config_and_the_rules_unit_tests(args):
    result = run_promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_refuses_a_broken_rule_and_an_alert_that_fires_against_its_unit_test(tmp_path):
    rules = (CONTRIB / "alerts.yml").read_text()
    broken = rules.replace("expr: scheduler_database_up == 0", "expr: scheduler_database_up ==")
    (tmp_path / "alerts.yml").write_text(broken)
    assert run_promtool("check", "rules", "alerts.yml", cwd=tmp_path).returncode != 0
    eager = rules.replace("for: 5m", "for: 0m")
    (tmp_path / "alerts.yml").write_text(eager)
    shutil.copy(CONTRIB / "alerts_test.yml", tmp_path)
    result = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "SchedulerDown" in result.stdout + result.stderr


def test_each_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not():
    fires: set[str] = set()
    quiet: set[str] = set()
    name = None
    for line in (CONTRIB / "alerts_test.yml").read_text().splitlines():
        if m := re.match(r"\s*alertname: (\w+)", line):
            name = m.group(1)
        elif (m := re.match(r"\s*exp_alerts:\s*(\[\])?\s*$", line)) and name is not None:
            (quiet if m.group(1) else fires).add(name)
            name = None
    names = alert_names()
    assert sorted(names) == sorted(["SchedulerDown", "SchedulerAbsent", "SchedulerDatabaseUnreachable",
                                    "SchedulerJobOverdue", "SchedulerJobFailingRepeatedly",
                                    "SchedulerJobSlotsMissed"])  # fmt: skip
    assert fires == set(names) and quiet == set(names)


def test_every_metric_and_label_the_rules_read_is_exported_by_a_real_daemon(base_env, daemon_factory, db, tmp_path):
    used = set(re.findall(r"\bscheduler_[a-z_]+\b", expressions()))
    grouped = re.findall(r"by \(([\w, ]+)\) \((scheduler_[a-z_]+)\)", expressions())
    assert used and grouped  # the patterns still find what the rules say
    port = free_port()
    # Beside the interval job, a calendar job whose schedule was published three minutes ago: the
    # daemon owes it three slots, crawls the latest and records two missed (scheduler_slots_missed).
    jobs = tmp_path / "schedule.toml"
    jobs.write_text('[jobs.ok]\nspider = "ok"\n\n[jobs.minutely]\nspider = "ok"\ncron = "* * * * *"\n')
    minutely = make_job(name="minutely", spider="ok", defaults=JobDefaults.from_settings(Settings.from_mapping(base_env)),
                        calendar=Calendar("* * * * *", ZoneInfo("UTC")))  # fmt: skip
    Store(db).publish_jobs([minutely], path=None, error=None, spiders=None, now=utcnow() - timedelta(minutes=3),
                           owner="earlier")  # fmt: skip
    env = {**base_env, "SCHEDULER_JOBS_FILE": str(jobs), "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_TICK_SECONDS": "1"}
    d = daemon_factory(env).start()
    wait_for(lambda: '"run_completed"' in d.output(), timeout=60, what="a run")

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()

    text = wait_for(lambda: next((t for t in [metrics()] if "scheduler_slots_missed_total{" in t), None),
                    what="the missed slots counted")
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    assert sorted(used - labels.keys()) == []
    for by, metric in grouped:
        wanted = {label.strip() for label in by.split(",")}
        assert wanted <= labels[metric], f"{metric} lacks {wanted - labels[metric]}"
    assert 'scheduler_job_interval_seconds{job="ok",spider="ok"} 14400.0' in text  # the default 4 h
    assert 'scheduler_job_paused{job="ok"} 0.0' in text
    assert 'scheduler_job_consecutive_failures{job="ok",spider="ok"} 0.0' in text
    assert "scheduler_database_up 1.0" in text
    # Two slots missed, or three when a minute turned while the daemon started.
    assert re.search(r'^scheduler_slots_missed_total\{cause="daemon_down",job="minutely"\} [23]\.0$', text, re.M)
    assert 'scheduler_next_slot_timestamp_seconds{job="minutely"}' in text
