"""The daemon loads psycopg2 with Python's `ssl` hidden (to stay small), so prove that TLS to
PostgreSQL still works: libpq brings and sets up its own OpenSSL."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, PostgresServer


@pytest.fixture
def tls_server():
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test server's certificate (tests/run.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="scheduler-tls-"))
    server = PostgresServer(base)
    server.init()
    key, cert = server.data / "server.key", server.data / "server.crt"
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "1", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    for path in (key, cert):
        if server.user:
            entry = pwd.getpwnam(server.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o600)
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write("ssl = on\n")
    server.start()
    yield server
    server.stop("immediate")
    shutil.rmtree(base, ignore_errors=True)


def test_the_daemon_reaches_postgres_over_tls_although_it_loads_psycopg2_without_python_ssl(tls_server):
    code = (
        "import sys, daemon.__main__\n"
        "from daemon.records import db\n"
        "from daemon.settings.config import Settings\n"
        "assert 'ssl' not in sys.modules\n"
        "conn = db.connect(Settings.from_mapping(dict(__import__('os').environ)))\n"
        "cur = conn.cursor()\n"
        "cur.execute('SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')\n"
        "print(*cur.fetchone())\n"
    )
    env = {**tls_server.env("postgres"), "PGSSLMODE": "require", "SCRAPY_PROJECT_DIR": str(ROOT / "example_project"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "True" and done.stdout.split()[1].startswith("TLS")
