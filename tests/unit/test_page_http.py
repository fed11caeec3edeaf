"""The endpoint's guards, on a real server bound to 127.0.0.1 (PostgreSQL is not there: a page
that passes the guards answers 503): the Host header, basic auth and its limit on failures, the refusals of the actions (no auth, read-only, another origin, no token), GET and HEAD elsewhere, the
security headers on every answer, and the probes left open."""

from __future__ import annotations

import base64
import http.client
import json
import socket

import pytest

from daemon.settings.config import Settings
from daemon.settings.secret import Secret
from daemon.web.http import HttpEndpoint
from daemon.telemetry.metrics import Metrics
from tests.conftest import ROOT, free_port

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")  # fmt: skip


@pytest.fixture
def serve(tmp_path):
    started: list[HttpEndpoint] = []

    def start(env: dict[str, str] | None = None, **kwargs) -> int:
        port = free_port()
        (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)  # as the daemon makes it at start
        settings = Settings.from_mapping({
            "SCRAPY_PROJECT_DIR": str(ROOT / "example_project"), "SCHEDULER_STATE_DIR": str(tmp_path / "state"),
            "SCHEDULER_HTTP_PORT": str(port), "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), **(env or {}),
        })  # fmt: skip
        endpoint = HttpEndpoint(settings, Metrics(), lambda: {"jobs": [{"id": "spiders"}]}, **kwargs)
        endpoint.start()
        started.append(endpoint)
        return port

    yield start
    for endpoint in started:
        endpoint.stop()


def ask(port: int, path: str, *, method: str = "GET", host: str | None = None, auth: str | None = None,
        accept: str | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host if host is not None else f"127.0.0.1:{port}"}
    if auth is not None:
        headers["Authorization"] = auth
    if accept is not None:
        headers["Accept"] = accept
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return answer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_every_answer_carries_a_policy_without_scripts_nosniff_and_no_referrer(serve):
    port = serve()
    for path in ("/", "/healthz", "/metrics", "/jobs", "/nowhere", "/?days=99"):
        _, headers, _ = ask(port, path)
        assert headers["content-security-policy"] == CSP, path
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"


def test_a_page_without_its_database_answers_503_and_a_bad_days_400(serve):
    port = serve()
    status, headers, body = ask(port, "/")
    assert status == 503 and headers["content-type"].startswith("text/html") and b"unreachable" in body
    for bad in ("0", "31", "7x", "", "-1", "1e1", "07%00"):
        status, _, body = ask(port, f"/api/overview?days={bad}")
        assert status == 400 and "from 1 to 30" in json.loads(body)["error"], bad
    assert ask(port, "/?days=7&days=8")[0] == 400
    assert ask(port, "/?failed=yes")[0] == 400


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_the_server_serves_nothing_but_get_head_and_post(serve, method):
    status, headers, _ = ask(serve(), "/", method=method)
    assert status == 405 and headers["allow"] == "GET, HEAD, POST"


def test_a_post_passes_the_server_but_no_page_action_takes_it_yet(serve):
    status, headers, _ = ask(serve(), "/", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_head_answers_the_headers_without_a_body(serve):
    status, headers, body = ask(serve(), "/healthz", method="HEAD")
    assert status == 503 and int(headers["content-length"]) > 0 and body == b""


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("localhost:{port}", True), ("127.0.0.1:{port}", True), ("[::1]:{port}", True), ("LOCALHOST.:{port}", True),
     ("127.0.0.1:8080", True),  # a published container port may differ from the one bound
     ("scheduler.lan", True), ("scheduler.lan:{port}", True), ("proxy.lan:8443", True), ("proxy.lan:8444", False),
     ("evil.example:{port}", False), ("evil.example", False), ("127.0.0.1.evil.example:{port}", False), ("", False)],
)  # fmt: skip
def test_a_foreign_host_is_refused_before_anything_is_read(serve, host, allowed):
    port = serve(allowed_hosts=["scheduler.lan", "Proxy.lan:8443"])
    status, _, body = ask(port, "/", host=host.format(port=port))
    assert (status != 400) is allowed, (status, body)
    assert (body == b"this Host is not served here\n") is not allowed


def test_the_probes_answer_whatever_the_host_and_without_credentials(serve):
    port = serve(user="alice", password=Secret("s3cret"))
    assert ask(port, "/healthz", host="scheduler:9464")[0] == 503  # stale heartbeat: answered, not refused
    assert ask(port, "/metrics", host="10.0.0.7:9464")[0] == 200


@pytest.mark.parametrize(
    ("auth", "passes"),
    [(None, False), (basic("alice", "wrong"), False), (basic("bob", "s3cret"), False), (basic("alice", ""), False),
     ("Basic !!!not-base64", False), ("Bearer s3cret", False), ("Basic " + base64.b64encode(b"alice").decode(), False),
     (basic("alice", "s3cret"), True), ("basic " + base64.b64encode(b"alice:s3cret").decode(), True)],
    ids=["none", "wrong password", "wrong user", "empty password", "not base64", "another scheme", "no colon",
         "right", "scheme in lower case"],
)  # fmt: skip
def test_with_credentials_set_every_page_asks_for_them(serve, auth, passes):
    port = serve(user="alice", password=Secret("s3cret"))
    for path in ("/", "/api/overview", "/runs/1", "/jobs"):
        status, headers, body = ask(port, path, auth=auth)
        if passes:
            assert status != 401, path
        else:
            assert status == 401 and headers["www-authenticate"] == 'Basic realm="persistent-scheduler", charset="UTF-8"'
            assert b"s3cret" not in body


def test_credentials_need_both_a_user_and_a_password():
    settings = Settings.from_mapping({"SCRAPY_PROJECT_DIR": str(ROOT / "example_project")})
    for kwargs in ({"user": "alice"}, {"password": Secret("x")}, {"user": "a:b", "password": Secret("x")}):
        with pytest.raises(ValueError):
            HttpEndpoint(settings, Metrics(), dict, **kwargs)
    assert "s3cret" not in repr(vars(HttpEndpoint(settings, Metrics(), dict, user="a", password=Secret("s3cret"))))


def test_scripts_keep_the_json_of_jobs_and_a_browser_gets_the_page(serve):
    port = serve()
    status, headers, body = ask(port, "/jobs/spiders")
    assert status == 200 and json.loads(body) == {"id": "spiders"}
    status, headers, _ = ask(port, "/jobs/spiders", accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert status == 503 and headers["content-type"].startswith("text/html")  # the job's page, its database away


def test_the_settings_limits_reach_the_server(tmp_path):
    port = free_port()
    settings = Settings.from_mapping({
        "SCRAPY_PROJECT_DIR": str(ROOT / "example_project"), "SCHEDULER_STATE_DIR": str(tmp_path / "state"),
        "SCHEDULER_HTTP_PORT": str(port), "SCHEDULER_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "1",
        "SCHEDULER_HTTP_THREADS": "2",
    })  # fmt: skip
    endpoint = HttpEndpoint(settings, Metrics(), dict)
    endpoint.start()
    try:
        assert endpoint.server.limits.threads == 2 and endpoint.server.limits.per_address == 1
        address = ("127.0.0.1", port)
        with socket.create_connection(address) as first, socket.create_connection(address) as second:
            second.settimeout(5)
            assert second.recv(1) == b""  # closed at once: one connection per address
            first.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            first.settimeout(5)
            assert first.recv(12) == b"HTTP/1.1 200"
    finally:
        endpoint.stop()


def post(port: int, path: str, body: bytes = b"", *, auth: str | None = None,
         headers: dict[str, str | None] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sent = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"http://127.0.0.1:{port}", **({"Authorization": auth} if auth else {}), **(headers or {})}
    conn.request("POST", path, body=body, headers={k: v for k, v in sent.items() if v is not None})
    response = conn.getresponse()
    answer = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return answer


ALICE = {"user": "alice", "password": Secret("s3cret")}


def test_without_basic_auth_every_action_is_refused_403_and_says_why(serve):
    port = serve()
    for path in ("/jobs/news/pause", "/jobs/news/run-now", "/api/jobs/news/cancel", "/api/jobs/news/resume"):
        status, _, body = post(port, path, b"token=x")
        assert status == 403 and b"basic auth" in body, path


def test_with_readonly_set_actions_are_refused_even_with_credentials(serve):
    port = serve({"SCHEDULER_HTTP_READONLY": "true"}, **ALICE)
    status, _, body = post(port, "/api/jobs/news/pause", b"{}", auth=basic("alice", "s3cret"),
                           headers={"Content-Type": "application/json"})
    assert status == 403 and b"SCHEDULER_HTTP_READONLY" in body


def test_a_post_anywhere_but_a_jobs_action_is_405(serve):
    port = serve(**ALICE)
    assert post(port, "/", auth=basic("alice", "s3cret"))[0] == 405
    assert post(port, "/jobs/news/delete", auth=basic("alice", "s3cret"))[0] == 405


@pytest.mark.parametrize("headers, body, status, said", [
    ({"Origin": "http://127.0.0.1:1"}, b"token=x", 403, b"foreign Origin"),
    ({"Origin": "http://evil.example"}, b"token=x", 403, b"foreign Origin"),
    ({"Origin": "null"}, b"token=x", 403, b"opaque"),
    ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, b"token=x", 403, b"cross-site"),
    ({}, b"", 403, b"no token"),
    ({}, b"token=123.abc", 403, b"another user, action or job"),
    ({"Content-Type": "text/plain"}, b"token=x", 415, b"urlencoded"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"token=x", 415, b"urlencoded"),
    ({}, b"token=a&token=b", 400, b"at most once"),
])  # fmt: skip
def test_a_form_from_another_origin_or_without_its_token_is_refused_before_anything_is_read(serve, headers, body,
                                                                                             status, said):
    port = serve(**ALICE)
    answer = post(port, "/jobs/news/pause", body, auth=basic("alice", "s3cret"), headers=headers)
    assert (answer[0], said in answer[2]) == (status, True), answer


@pytest.mark.parametrize("headers, status", [
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ({"Content-Type": "text/plain"}, 415),
    ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403),
    ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site", "Origin": None}, 403),
])  # fmt: skip
def test_the_api_wants_json_and_refuses_a_foreign_origin(serve, headers, status):
    port = serve(**ALICE)
    answer = post(port, "/api/jobs/news/pause", b"{}", auth=basic("alice", "s3cret"), headers=headers)
    assert answer[0] == status and "error" in json.loads(answer[2])


def test_the_api_without_credentials_is_401(serve):
    port = serve(**ALICE)
    status, headers, _ = post(port, "/api/jobs/news/pause", b"{}", headers={"Content-Type": "application/json"})
    assert status == 401 and headers["www-authenticate"].startswith("Basic")


def test_ten_wrong_passwords_from_an_address_hold_it_back_with_429_even_the_right_one(serve, caplog):
    port = serve(**ALICE)
    for _ in range(10):
        assert ask(port, "/", auth=basic("alice", "guess"))[0] == 401
    status, headers, _ = ask(port, "/", auth=basic("alice", "s3cret"))
    assert status == 429 and headers["retry-after"] == "60"
    assert post(port, "/api/jobs/news/pause", b"{}", auth=basic("alice", "s3cret"))[0] == 429


def test_a_body_without_a_length_or_too_long_is_refused(serve):
    port = serve(**ALICE)
    assert post(port, "/jobs/news/pause", b"x" * 20000, auth=basic("alice", "s3cret"))[0] == 413
