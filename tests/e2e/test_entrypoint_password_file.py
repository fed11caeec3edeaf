"""`docker-entrypoint.sh password-file FILE`: what docker-compose.yml's one-shot db-password service
runs to give both services the database password. Here from a checkout, as this user (the daemon's
user in the image: DAEMON_USER), with the real script and a real file."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

CANARY = "pw-canary-7f3a"


def password_file(target: Path, **env: str) -> subprocess.CompletedProcess:
    full = {"PATH": "/usr/bin:/bin", "DAEMON_USER": getpass.getuser(), **env}
    return subprocess.run([str(ROOT / "docker-entrypoint.sh"), "password-file", str(target)], env=full,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture
def target(tmp_path: Path) -> Path:
    (tmp_path / "secrets").mkdir()
    return tmp_path / "secrets" / "db_password"


def test_a_new_password_is_made_once_readable_by_its_owner_alone(target):
    done = password_file(target)
    assert done.returncode == 0, done.stderr
    made = target.read_text()
    assert made.endswith("\n") and len(made.strip()) >= 43  # 256 bits of URL-safe base64
    assert done.stdout + done.stderr == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o400 and target.stat().st_uid == os.getuid()
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o711
    assert [p.name for p in target.parent.iterdir()] == ["db_password"]  # no temporary file left
    assert password_file(target).returncode == 0
    assert target.read_text() == made  # kept: the database was set up with it


def test_a_new_stack_gets_another_password(tmp_path):
    made = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        assert password_file(tmp_path / name / "db_password").returncode == 0
        made.append((tmp_path / name / "db_password").read_text())
    assert made[0] != made[1]


def test_db_password_replaces_the_one_made(target):
    assert password_file(target).returncode == 0
    assert password_file(target, DB_PASSWORD=CANARY).returncode == 0
    assert target.read_text() == CANARY + "\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o400


def test_db_password_file_gives_its_first_line(target, tmp_path):
    (tmp_path / "mine").write_text(CANARY + "\r\nsecond line\n")
    done = password_file(target, DB_PASSWORD_FILE=str(tmp_path / "mine"))
    assert done.returncode == 0, done.stderr
    assert target.read_text() == CANARY + "\n"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DB_PASSWORD": CANARY, "DB_PASSWORD_FILE": "/run/secrets/x"},
         "config error: DB_PASSWORD and DB_PASSWORD_FILE='/run/secrets/x' are both set: set only one of them"),
        ({"DB_PASSWORD": CANARY + "\r"},
         "config error: DB_PASSWORD=<hidden> is not allowed: a password without control characters"),
        ({"DB_PASSWORD": CANARY + "\x1b"},
         "config error: DB_PASSWORD=<hidden> is not allowed: a password without control characters"),
        ({"DB_PASSWORD_FILE": "{tmp}/missing"},
         "config error: DB_PASSWORD_FILE='{tmp}/missing' is not allowed: a regular, readable file"),
        ({"DB_PASSWORD_FILE": "{tmp}/empty"},
         "config error: DB_PASSWORD_FILE='{tmp}/empty' is not allowed: a regular, readable file"),
        ({"DB_PASSWORD_FILE": "{tmp}/control"},
         "config error: DB_PASSWORD_FILE='{tmp}/control' is not allowed: a regular, readable file"),
        ({"DB_PASSWORD_FILE": "{tmp}"},
         "config error: DB_PASSWORD_FILE='{tmp}' is not allowed: a regular, readable file"),
    ],
)  # fmt: skip
def test_a_bad_password_setting_exits_2_with_one_line_that_never_shows_it(target, tmp_path, env, line):
    (tmp_path / "empty").write_text("\n" + CANARY + "\n")
    (tmp_path / "control").write_text(CANARY + "\x07\n")
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    done = password_file(target, **env)
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(line.replace("{tmp}", str(tmp_path)))
    assert CANARY not in done.stderr
    assert not target.exists()
