"""The container stack, built and run for real with docker-compose v1 and docker compose v2.

Each flavour gets its own copy of the project (with its own .env, or none: a fresh clone) and its
own compose project name, so nothing here touches the developer's .env or stack. Tests in a class
share one stack and run in order, like a user's session: up, stop/start, kill, stop, down/up, psql,
healthcheck.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, figure, free_port
from tests.helpers import json_lines, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

CANARY = "stack-canary-" + uuid.uuid4().hex[:8]
TEST_ENV = {
    "DB_HOST": "postgres",
    "DB_NAME": "jobsearchtools",
    "DB_USER": "postgres",
    "DB_PASSWORD": CANARY,
    "SCRAPY_PROJECT_HOST_DIR": "./tests/scrapy_project",
    "SCRAPY_PROJECT_DIR": "/project",
    "SCHEDULER_SPIDERS": "ok,slow",
    "SCHEDULER_INTERVAL_HOURS": "0.05",  # 3 minutes: nothing runs by itself during a scenario
    "SCHEDULER_TICK_SECONDS": "1",
    "SCHEDULER_STOP_GRACE_SECONDS": "5",
    "LOG_FORMAT": "json",
    "SCHEDULER_HTTP_PORT": "9464",
}
COPY = ["Dockerfile", ".dockerignore", "docker-compose.yml", "docker-entrypoint.sh", "requirements.txt",
        "daemon", "sql", "example_project", "tests/scrapy_project", "tests/e2e/docker"]  # fmt: skip
FLAVOURS = {"v1": ["docker-compose"], "v2": ["docker", "compose"]}
DEFAULT_PAGE_PORT = 9464


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_docker() -> None:
    if docker_answers():
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail("REQUIRE_DOCKER=1 but no Docker engine answers (run ../shared/docker/offline-images.sh)")
    pytest.skip("no Docker engine answers: the container stack tests need one (REQUIRE_DOCKER=1 in CI)")


class Stack:
    def __init__(self, flavour: str, workdir: Path, files: list[str]):
        """`files`: the compose files as -f arguments; none, what a user's bare command reads."""
        self.command = FLAVOURS[flavour]
        self.workdir = workdir
        self.project = f"schede2e{flavour}{uuid.uuid4().hex[:6]}"
        self.files = files

    def compose(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        argv = [*self.command, "-p", self.project]
        for f in self.files:
            argv += ["-f", f]
        done = subprocess.run([*argv, *args], cwd=self.workdir, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def sql(self, query: str) -> list[list[str]]:
        out = self.compose("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "jobsearchtools",
                           "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", query).stdout  # fmt: skip
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def count(self, where: str) -> int:
        """Runs matching `where`; -1 while the tables are not there yet (migrations still running)."""
        try:
            return int(self.sql(f"SELECT count(*) FROM scheduler_state WHERE {where}")[0][0])
        except AssertionError as exc:
            if "does not exist" in str(exc):
                return -1
            raise

    def spider_count(self, where: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM spider_runs WHERE {where}")[0][0])

    def spider_count_or_none(self, where: str) -> int | None:
        """As spider_count; None while PostgreSQL or the tables are not there yet."""
        try:
            return self.spider_count(where)
        except AssertionError:
            return None

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", *(services or ("scheduler",))).stdout

    def password_file(self) -> str:
        """The database password as the db-password service wrote it (read as root in postgres)."""
        return self.compose("exec", "-T", "postgres", "cat", "/run/secrets/db_password").stdout

    def connects(self, password: str) -> subprocess.CompletedProcess:
        """A connection from the scheduler's container over the compose network with `password`
        (through stdin, so never on a command line): whether the database takes it."""
        code = ("import sys, psycopg2; psycopg2.connect(host='postgres', dbname='jobsearchtools', user='postgres', "
                "password=sys.stdin.read(), connect_timeout=5).close()")  # fmt: skip
        argv = [*self.command, "-p", self.project, *sum((["-f", f] for f in self.files), [])]
        return subprocess.run([*argv, "exec", "-T", "scheduler", "python", "-c", code], cwd=self.workdir,
                              input=password, capture_output=True, text=True, timeout=60)  # fmt: skip

    def container(self, service: str = "scheduler") -> str:
        return self.compose("ps", "-a", "-q", service).stdout.strip().splitlines()[0]

    def inspect_all(self, service: str) -> str:
        """Everything `docker inspect` tells about the service's container."""
        return subprocess.run(["docker", "inspect", self.container(service)], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    def inspect(self, what: str, service: str = "scheduler") -> str:
        return subprocess.run(
            ["docker", "inspect", "-f", what, self.container(service)], capture_output=True, text=True, check=True
        ).stdout.strip()

    def push_history_back(self) -> None:
        """Pretend the PC was off for a day: every recorded run is a day older."""
        self.sql("UPDATE scheduler_state SET last_run_at = last_run_at - interval '1 day'")
        self.sql("UPDATE spider_runs SET started_at = started_at - interval '1 day', "
                 "finished_at = finished_at - interval '1 day'")  # fmt: skip


def copy_project(flavour: str, tmp: Path) -> None:
    require_docker()
    if shutil.which(FLAVOURS[flavour][0]) is None:
        pytest.fail(f"{' '.join(FLAVOURS[flavour])} is not installed")
    for item in COPY:
        src, dst = ROOT / item, tmp / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


def make_stack(flavour: str, tmp: Path, *, secrets: bool = False) -> Stack:
    copy_project(flavour, tmp)
    # The user's .env is .env.example as shipped; the tests change only what they must.
    shipped = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )  # fmt: skip
    env = {**shipped, **TEST_ENV}
    files = ["docker-compose.yml", "tests/e2e/docker/compose.test.yml"]
    if secrets:
        env.pop("DB_PASSWORD")
        (tmp / "secrets").mkdir()
        (tmp / "secrets" / "db_password").write_text(CANARY + "\n")
        (tmp / "secrets" / "db_password").chmod(0o600)
        files.append("tests/e2e/docker/compose.secrets.test.yml")
    env["SCHEDULER_HTTP_HOST_PORT"] = str(free_port())  # compose publishes it on 127.0.0.1 only
    (tmp / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return Stack(flavour, tmp, files)


@pytest.fixture(scope="class", params=["v1", "v2"])
def stack(request, tmp_path_factory):
    """The same session with docker-compose v1 (what users type) and docker compose v2."""
    stack = make_stack(request.param, tmp_path_factory.mktemp(f"stack-{request.param}"))
    yield stack
    stack.compose("down", "-v", "--remove-orphans", check=False)


@pytest.fixture(scope="class", params=["v1", "v2"])
def stack_secrets(request, tmp_path_factory):
    stack = make_stack(request.param, tmp_path_factory.mktemp(f"stack-secrets-{request.param}"), secrets=True)
    yield stack
    stack.compose("down", "-v", "--remove-orphans", check=False)


@pytest.fixture(scope="class", params=["v1", "v2"])
def fresh_stack(request, tmp_path_factory):
    """A fresh clone: no .env, no override, the bare command (with a project name of its own)."""
    tmp = tmp_path_factory.mktemp(f"fresh-{request.param}")
    copy_project(request.param, tmp)
    assert not (tmp / ".env").exists()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no user
        try:
            probe.bind(("127.0.0.1", DEFAULT_PAGE_PORT))
        except OSError:
            pytest.fail(f"127.0.0.1:{DEFAULT_PAGE_PORT} is in use: the default stack publishes its page there")
    stack = Stack(request.param, tmp, [])
    yield stack
    stack.compose("down", "-v", "--remove-orphans", check=False)


def wait_running_spider(stack: Stack) -> None:
    wait_for(lambda: stack.spider_count("status = 'running' AND spider = 'slow'") == 1, timeout=120, step=0.5,
             what="the slow spider to be running")  # fmt: skip


class TestComposeStack:
    """The commands users type, in the order they type them."""

    def test_up_on_an_empty_volume_migrates_and_runs_at_once(self, stack):
        stack.compose("build", timeout=900)
        stack.compose("up", "-d")
        # Each job's crawl is a run of its own when the slots are fewer than the due jobs (issue 20).
        wait_for(lambda: stack.spider_count_or_none("status = 'completed'") == 2, timeout=180, step=1,
                 what="both jobs' first crawls")  # fmt: skip
        assert int(stack.sql("SELECT count(*) FROM schema_migrations")[0][0]) >= 3
        logs = stack.logs()
        assert "Last run was" in logs
        records = json_lines("\n".join(line.split("|", 1)[-1] for line in logs.splitlines()))
        summaries = [r for r in records if r.get("event") == "spider_run_finished"]
        assert {s["spider"] for s in summaries} == {"ok", "slow"}
        assert {(s["spider"], s["status"], s["items"]) for s in summaries} == {
            ("ok", "completed", 15),
            ("slow", "completed", 5),
        }

    def test_stop_and_start_within_the_interval_runs_nothing_new(self, stack):
        stack.compose("stop", "scheduler")
        stack.compose("start", "scheduler")
        wait_for(lambda: stack.logs().count("Recent run detected") >= 1, timeout=60, what="the decision")
        time.sleep(3)
        assert stack.spider_count("true") == 2  # no crawl beyond each job's first
        assert "next run due at" in stack.logs()

    def test_start_after_the_interval_has_passed_runs_at_once(self, stack):
        stack.compose("stop", "scheduler")
        stack.push_history_back()
        stack.compose("start", "scheduler")
        wait_for(lambda: stack.spider_count("status = 'completed'") == 4, timeout=120, step=1,
                 what="each job's catch-up crawl")  # fmt: skip

    def test_kill_mid_run_then_start_fails_the_stale_run_and_runs_again(self, stack):
        stack.compose("stop", "scheduler")
        stack.push_history_back()
        stack.compose("start", "scheduler")
        wait_running_spider(stack)
        stack.compose("kill", "scheduler")
        [[killed]] = stack.sql("SELECT run_id FROM spider_runs WHERE status = 'running' AND spider = 'slow'")
        stack.compose("start", "scheduler")
        wait_for(lambda: stack.spider_count("status = 'completed' AND spider = 'slow'") == 3, timeout=120, step=1,
                 what="the re-run")  # fmt: skip
        assert stack.sql(f"SELECT status FROM scheduler_state WHERE id = {int(killed)}") == [["failed"]]
        assert stack.spider_count("failure = 'stale'") >= 1
        wait_for(lambda: stack.count("status = 'running'") == 0, timeout=60, what="no run left running")

    def test_stop_mid_run_exits_0_and_records_the_run_as_interrupted(self, stack):
        stack.compose("stop", "scheduler")
        stack.push_history_back()
        stack.compose("start", "scheduler")
        wait_running_spider(stack)
        started = time.monotonic()
        stack.compose("stop", "scheduler")
        took = time.monotonic() - started
        figure(f"docker-compose stop during a run took {took:.1f} s (daemon grace 5 s, compose grace 40 s)")
        assert stack.inspect("{{.State.ExitCode}}") == "0"
        assert _container_crawls() == []  # no crawl outlived the daemon
        assert stack.spider_count("failure = 'interrupted' AND spider = 'slow'") == 1
        assert stack.count("status = 'running'") == 0
        [[error]] = stack.sql("SELECT s.error FROM scheduler_state s JOIN spider_runs r ON r.run_id = s.id "
                              "WHERE r.spider = 'slow' ORDER BY s.id DESC LIMIT 1")  # slow's run: interrupted
        assert "daemon was shutting down" in error or "stopping" in error

    def test_down_and_up_keeps_the_history(self, stack):
        before = stack.count("true")
        stack.compose("down")
        stack.compose("up", "-d")
        wait_for(lambda: stack.inspect("{{.State.Health.Status}}", "postgres") == "healthy", timeout=120,
                 what="postgres")  # fmt: skip
        assert stack.count("true") >= before

    def test_the_password_set_in_env_is_the_one_the_database_takes(self, stack):
        # .env's DB_PASSWORD went through the db-password service to both services, on the first
        # `up` (the database was initialized with it) and on the one after `down`.
        wrong = stack.connects("not-" + CANARY)
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        right = stack.connects(CANARY)
        assert right.returncode == 0, right.stderr

    def test_the_monitoring_queries_run_verbatim_through_compose_exec(self, stack):
        sql = (ROOT / "sql" / "monitoring.sql").read_text()
        done = subprocess.run(
            [*stack.command, "-p", stack.project, *sum((["-f", f] for f in stack.files), []),
             "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "jobsearchtools", "-v", "ON_ERROR_STOP=1"],
            cwd=stack.workdir, input=sql, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "hours_ago" in done.stdout and "hours_between" in done.stdout and "completed" in done.stdout

    def test_the_healthcheck_follows_the_loop_and_turns_unhealthy_when_it_freezes(self, stack):
        wait_for(lambda: stack.inspect("{{.State.Health.Status}}") == "healthy", timeout=120, what="healthy")
        top = subprocess.run(["docker", "top", stack.container(), "-eo", "pid,args"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        # The daemon itself (the entrypoint exec'd it), not tini (init: true) nor the warm parent.
        daemon = ["-m", "daemon", "run", "--migrate"]
        pid = next(
            int(line.split()[0])
            for line in top.splitlines()[1:]
            if line.split()[1].rsplit("/", 1)[-1].startswith("python") and line.split()[2:] == daemon
        )
        os.kill(pid, 19)  # SIGSTOP: the process exists, but its loop no longer turns
        try:
            wait_for(lambda: stack.inspect("{{.State.Health.Status}}") == "unhealthy", timeout=120,
                     what="unhealthy")  # fmt: skip
        finally:
            os.kill(pid, 18)  # SIGCONT
        wait_for(lambda: stack.inspect("{{.State.Health.Status}}") == "healthy", timeout=120, what="healthy again")

    def test_no_password_in_logs_the_image_or_the_healthcheck_output(self, stack):
        assert CANARY not in stack.logs("postgres", "scheduler")
        assert CANARY not in stack.inspect_all("scheduler") + stack.inspect_all("postgres")
        health = stack.inspect("{{json .State.Health}}")
        assert CANARY not in health
        history = subprocess.run(["docker", "history", "--no-trunc", "persistent-scheduler:latest"],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
        image = subprocess.run(["docker", "image", "inspect", "persistent-scheduler:latest"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert CANARY not in history + image
        user = json.loads(image)[0]["Config"]["User"]
        assert user and user not in ("root", "0")


class TestComposeWithSecrets:
    """The password as a compose secret instead of a variable (v1 and v2); the hardening."""

    def test_up_runs_at_once_with_the_password_from_a_secret_file(self, stack_secrets):
        stack = stack_secrets
        stack.compose("up", "-d", "--build", timeout=900)
        wait_for(lambda: stack.count("status = 'completed'") >= 1, timeout=180, step=1, what="the first run")
        env = stack.inspect("{{json .Config.Env}}")
        assert CANARY not in env and "DB_PASSWORD_FILE=/run/secrets/db_password" in env
        assert CANARY not in "".join(stack.inspect_all(s) for s in ("db-password", "postgres", "scheduler"))
        assert CANARY not in stack.logs()
        assert "Last run was" in stack.logs()

    def test_the_http_endpoint_is_published_on_loopback_only(self, stack_secrets):
        stack = stack_secrets
        port = (stack.workdir / ".env").read_text().split("SCHEDULER_HTTP_HOST_PORT=")[1].split()[0]
        bindings = stack.inspect("{{json .HostConfig.PortBindings}}")
        assert f'"HostIp":"127.0.0.1","HostPort":"{port}"' in bindings.replace(" ", "")
        body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/metrics"), timeout=60, what="the metrics endpoint")
        assert "scheduler_runs_total" in body

    def test_the_scheduler_runs_hardened(self, stack_secrets):
        stack = stack_secrets
        assert stack.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
        assert "ALL" in stack.inspect("{{json .HostConfig.CapDrop}}")
        assert "no-new-privileges:true" in stack.inspect("{{json .HostConfig.SecurityOpt}}")
        assert stack.inspect("{{.HostConfig.Init}}") == "true"
        assert "/tmp" in stack.inspect("{{json .HostConfig.Tmpfs}}")
        assert stack.inspect("{{json .NetworkSettings.Ports}}", "postgres") in ("{}", "null", '{"5432/tcp":null}')


class TestFreshClone:
    """A newcomer's start: no .env to write, no password to invent, the page on 127.0.0.1:9464."""

    def test_up_without_an_env_file_brings_the_stack_healthy_and_records_a_crawl(self, fresh_stack):
        stack = fresh_stack
        stack.compose("up", "-d", timeout=900)
        wait_for(lambda: stack.spider_count_or_none("finished_at IS NOT NULL"), timeout=180, step=1,
                 what="a crawl of the example project recorded")  # fmt: skip
        for service in ("postgres", "scheduler"):
            wait_for(lambda s=service: stack.inspect("{{.State.Health.Status}}", s) == "healthy", timeout=120,
                     what=f"{service} healthy")  # fmt: skip
        assert stack.inspect("{{.State.ExitCode}}", "db-password") == "0"

    def test_the_page_answers_on_loopback_port_9464(self, fresh_stack):
        stack = fresh_stack
        bindings = stack.inspect("{{json .HostConfig.PortBindings}}").replace(" ", "")
        assert f'"HostIp":"127.0.0.1","HostPort":"{DEFAULT_PAGE_PORT}"' in bindings
        body = wait_for(lambda: _get(f"http://127.0.0.1:{DEFAULT_PAGE_PORT}/healthz"), timeout=60, what="/healthz")
        assert json.loads(body)["status"] == "ok"

    def test_the_made_password_is_the_daemons_alone_and_shown_nowhere(self, fresh_stack):
        stack = fresh_stack
        password = stack.password_file().strip()
        assert len(password) >= 32
        mode = stack.compose("exec", "-T", "scheduler", "stat", "-c", "%a %U", "/run/secrets/db_password").stdout
        assert mode.split() == ["400", "scheduler"]
        # The postgres server's own user may not read it (only its entrypoint, as root, does).
        assert stack.compose("exec", "-T", "-u", "postgres", "postgres", "cat", "/run/secrets/db_password",
                             check=False).returncode != 0  # fmt: skip
        assert password not in "".join(stack.inspect_all(s) for s in ("db-password", "postgres", "scheduler"))
        assert password not in stack.logs("db-password", "postgres", "scheduler")
        assert stack.connects(password).returncode == 0

    def test_up_after_down_keeps_the_password_and_the_history(self, fresh_stack):
        stack = fresh_stack
        password, crawls = stack.password_file(), stack.spider_count("true")
        stack.compose("down")
        stack.compose("up", "-d")
        assert stack.password_file() == password
        status = ("exec", "-T", "scheduler", "python", "-m", "daemon", "status")
        wait_for(lambda: stack.compose(*status, check=False).returncode == 0, timeout=120,
                 what="the status command, answered from the database")  # fmt: skip
        assert stack.spider_count("true") >= crawls >= 1


def _container_crawls() -> list[str]:
    """Crawl processes of a scheduler container still alive on this machine (the image's venv)."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in ps.splitlines() if "/opt/venv/bin/python -m scrapy crawl" in line]


def _get(url: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None
