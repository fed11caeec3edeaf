"""The page's basic auth and allowed hosts, set the way users set them: through the settings of a
real daemon process (SCHEDULER_HTTP_USER with SCHEDULER_HTTP_PASSWORD or its _FILE,
SCHEDULER_HTTP_ALLOWED_HOSTS)."""

from __future__ import annotations

import base64
import http.client

import pytest

from tests.conftest import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


def ask(port: int, path: str, *, host: str | None = None, auth: tuple[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Host": host or f"127.0.0.1:{port}", "Accept": "text/html"}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def test_a_daemon_with_a_page_password_in_a_file_asks_for_it_but_never_the_probes(base_env, daemon_factory, tmp_path):
    port = free_port()
    secret = tmp_path / "page-password"
    secret.write_text("c4nary-page-pw\n")
    env = {**base_env, "SCHEDULER_SPIDERS": "ok", "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_HTTP_USER": "reader",
           "SCHEDULER_HTTP_PASSWORD_FILE": str(secret), "SCHEDULER_HTTP_ALLOWED_HOSTS": "sched.example.test"}  # fmt: skip
    d = daemon_factory(env).start()
    wait_for(lambda: ask(port, "/healthz") in (200, 503), timeout=30, what="the endpoint")
    assert ask(port, "/") == 401
    assert ask(port, "/", auth=("reader", "wrong")) == 401
    assert ask(port, "/", auth=("reader", "c4nary-page-pw")) == 200
    assert ask(port, "/", host="sched.example.test", auth=("reader", "c4nary-page-pw")) == 200
    assert ask(port, "/", host="evil.example", auth=("reader", "c4nary-page-pw")) == 400  # DNS rebinding
    assert ask(port, "/metrics") == 200 and ask(port, "/healthz") in (200, 503)  # probes stay open
    assert "c4nary-page-pw" not in d.output()
