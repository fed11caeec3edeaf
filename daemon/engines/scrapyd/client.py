"""A small client for one Scrapyd node (scrapyd 1.6): schedule, ask, cancel, and read its logs.

Imported only when SCHEDULER_ENGINE=scrapyd; http.client (and ssl, for an https node) are imported
on the first request, so an idle daemon keeps neither resident. One connection per request: a
node is asked a few times a second at most.

Every failure is a `ScrapydError` naming the node by host:port only (never the URL's path, never
the credentials), and saying whether the request may have taken effect anyway (`maybe_delivered`:
the node stopped answering after the request was sent). Such a request is never repeated blindly:
the caller asks the node what became of it (docs/scrapyd-facts.md).

Facts this client relies on (measured, docs/scrapyd-facts.md): Scrapyd answers its own errors with
HTTP 200 and `{"status": "error", "message": ...}`; `status.json` says `null` for a job it does not
know; `/logs/` serves any file under `logs_dir` (a Twisted static file: HEAD, `Range: bytes=N-`);
a suffix range larger than the file (`bytes=-N`) is answered 500, so a tail asks the size first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from daemon.jobs.jobfile import RESERVED_ARGS

if TYPE_CHECKING:
    from daemon.settings.secret import Secret

DEFAULT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # listjobs.json keeps 100 finished jobs: a few tens of KiB
MAX_STATS_BYTES = 4 * 1024 * 1024
STATES = ("pending", "running", "finished")


class ScrapydError(Exception):
    """A Scrapyd node did not do what was asked."""

    def __init__(self, node: str, message: str, *, unreachable: bool = False, maybe_delivered: bool = False,
                 http_status: int | None = None) -> None:  # fmt: skip
        self.node = node
        self.unreachable = unreachable  # no connection: the request certainly never arrived
        self.maybe_delivered = maybe_delivered  # sent, but no answer: it may have taken effect
        self.http_status = http_status
        super().__init__(f"scrapyd node {node}: {message}")

    @property
    def node_failed(self) -> bool:
        """The node itself is at fault (down, no answer, refusing our credentials, broken), as
        opposed to refusing this one request (an unknown spider)."""
        return self.unreachable or self.maybe_delivered or self.http_status is not None


@dataclasses.dataclass(frozen=True)
class Jobs:
    """listjobs.json: the ids the node holds in each state. A finished id may also be pending or
    running again when ids are reused (Scrapyd accepts duplicates); ours never are."""

    pending: tuple[str, ...]
    running: tuple[str, ...]
    finished: tuple[str, ...]
    pids: dict[str, int]  # running job id -> its pid on the node

    @property
    def load(self) -> int:
        """What occupies the node's slots or waits for one, whoever scheduled it."""
        return len(self.pending) + len(self.running)

    def state(self, jobid: str) -> str:
        """'pending' | 'running' | 'finished' | 'unknown' (in that order: a job pending or running
        again outranks an older run of the same id)."""
        for state, ids in (("running", self.running), ("pending", self.pending), ("finished", self.finished)):
            if jobid in ids:
                return state
        return "unknown"


@dataclasses.dataclass(frozen=True)
class Load:
    pending: int
    running: int
    finished: int


def node_name(base_url: str) -> str:
    """host:port of a base URL: how a node is named in logs and errors."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"


class ScrapydClient:
    """One node. `base_url` is `http(s)://host:port[/prefix]`, without credentials (those come from
    `username` and `password`, and are sent only in the Authorization header)."""

    def __init__(self, base_url: str, *, username: str | None = None, password: Secret | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:  # fmt: skip
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a Scrapyd node's URL is http(s)://host:port")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("a Scrapyd node's URL has no credentials, query or fragment")
        self.url = base_url.rstrip("/")
        self.name = node_name(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._auth: str | None = None
        if username and password:
            import base64

            token = base64.b64encode(f"{username}:{password.reveal()}".encode()).decode("ascii")
            self._auth = f"Basic {token}"

    def __repr__(self) -> str:
        return f"ScrapydClient({self.name})"

    # The API -----------------------------------------------------------------------------------

    def schedule(self, project: str, spider: str, jobid: str, args: Sequence[tuple[str, str]] = (),
                 settings: Sequence[tuple[str, str]] = ()) -> str:  # fmt: skip
        """schedule.json with our own job id; the id Scrapyd confirms. Spider arguments are form
        fields, settings `setting=NAME=VALUE`; a reserved argument name is refused before sending."""
        clash = sorted({name for name, _ in args} & RESERVED_ARGS)
        if clash:
            raise ValueError(f"spider argument(s) {', '.join(clash)} cannot be passed through Scrapyd "
                             "(schedule.json takes these names itself)")  # fmt: skip
        fields = [("project", project), ("spider", spider), ("jobid", jobid)]
        fields += [("setting", f"{name}={value}") for name, value in settings]
        fields += list(args)
        answer = self._call("POST", "/schedule.json", fields)
        confirmed = answer.get("jobid")
        if confirmed != jobid:
            raise ScrapydError(self.name, f"schedule.json confirmed job id {confirmed!r}, not ours")
        return confirmed

    def status(self, jobid: str, project: str | None = None) -> str:
        """'pending' | 'running' | 'finished' | 'unknown' (status.json says null)."""
        fields = [("job", jobid)] + ([("project", project)] if project else [])
        state = self._call("GET", "/status.json", fields).get("currstate")
        if state is None:
            return "unknown"
        if state not in STATES:
            raise ScrapydError(self.name, f"status.json said currstate={str(state)[:40]!r}")
        return state

    def listjobs(self, project: str | None = None) -> Jobs:
        answer = self._call("GET", "/listjobs.json", [("project", project)] if project else [])
        try:
            ids = {state: tuple(str(job["id"]) for job in answer.get(state) or ()) for state in STATES}
            pids = {str(job["id"]): int(job["pid"]) for job in answer.get("running") or () if job.get("pid")}
        except (KeyError, TypeError, ValueError) as exc:
            raise ScrapydError(self.name, "listjobs.json answered in an unexpected shape") from exc
        return Jobs(ids["pending"], ids["running"], ids["finished"], pids)

    def daemonstatus(self) -> Load:
        answer = self._call("GET", "/daemonstatus.json", [])
        try:
            return Load(int(answer["pending"]), int(answer["running"]), int(answer["finished"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ScrapydError(self.name, "daemonstatus.json answered in an unexpected shape") from exc

    def cancel(self, project: str, jobid: str, signal: str = "TERM") -> str | None:
        """cancel.json: the state the job was in ('pending' | 'running'), or None: the node does not
        run it (finished, or unknown to it: an orphan of a restarted Scrapyd cannot be cancelled)."""
        answer = self._call("POST", "/cancel.json", [("project", project), ("job", jobid), ("signal", signal)])
        prevstate = answer.get("prevstate")
        return prevstate if prevstate in ("pending", "running") else None

    # Files under /logs/ -------------------------------------------------------------------------

    @staticmethod
    def log_path(project: str, spider: str, jobid: str, suffix: str = ".log") -> str:
        """Where Scrapyd writes (and serves) a job's log: /logs/<project>/<spider>/<jobid>.log."""
        from urllib.parse import quote

        return "/logs/" + "/".join(quote(part, safe="") for part in (project, spider, jobid + suffix))

    def log_url(self, project: str, spider: str, jobid: str) -> str:
        return self.url + self.log_path(project, spider, jobid)

    def file_size(self, path: str) -> int | None:
        """The size of a file under /logs/ (HEAD), or None when there is none."""
        status, headers, _ = self._request("HEAD", path)
        if status == 404:
            return None
        self._expect(status, 200, path)
        try:
            return int(headers.get("content-length", ""))
        except ValueError as exc:
            raise ScrapydError(self.name, "a file under /logs/ came without its size") from exc

    def tail(self, path: str, max_bytes: int) -> bytes | None:
        """The last `max_bytes` of a file under /logs/ (two requests: its size, then a range from
        an offset, since Twisted answers a suffix range longer than the file with a 500), or None
        when there is no such file."""
        size = self.file_size(path)
        if size is None:
            return None
        if size == 0:
            return b""
        start = max(0, size - max_bytes)
        status, _, data = self._request("GET", path, headers={"Range": f"bytes={start}-"}, limit=max_bytes)
        if status == 404:
            return None
        if status == 416:
            return b""  # it shrank between the two requests (replaced): nothing to read from there
        self._expect(status, (200, 206), path)
        return data[-max_bytes:]

    def fetch(self, path: str, max_bytes: int) -> bytes | None:
        """A whole small file under /logs/, or None when there is none (or it is larger)."""
        status, _, data = self._request("GET", path, limit=max_bytes)
        if status == 404:
            return None
        self._expect(status, 200, path)
        return data if len(data) <= max_bytes else None

    def stats(self, project: str, spider: str, jobid: str) -> dict[str, Any] | None:
        """The crawl's final stats, written next to its log by daemon.node_stats, or None."""
        data = self.fetch(self.log_path(project, spider, jobid, ".stats.json"), MAX_STATS_BYTES)
        if data is None:
            return None
        try:
            stats = json.loads(data)
        except ValueError:
            return None
        return stats if isinstance(stats, dict) else None

    # HTTP ---------------------------------------------------------------------------------------

    def _call(self, method: str, endpoint: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
        from urllib.parse import urlencode

        encoded = urlencode(fields)
        if method == "GET":
            status, _, data = self._request("GET", endpoint + (f"?{encoded}" if encoded else ""))
        else:
            status, _, data = self._request("POST", endpoint, body=encoded.encode(),
                                            headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        self._expect(status, 200, endpoint)
        try:
            answer = json.loads(data)
        except ValueError as exc:
            raise ScrapydError(self.name, f"{endpoint} did not answer JSON", http_status=status) from exc
        if not isinstance(answer, dict):
            raise ScrapydError(self.name, f"{endpoint} did not answer a JSON object", http_status=status)
        if answer.get("status") != "ok":
            # Scrapyd's own refusal (an unknown spider or project): the node works, the request is refused.
            raise ScrapydError(self.name, f"{endpoint} refused: {str(answer.get('message'))[:300]}")
        return answer

    def _expect(self, status: int, wanted: int | tuple[int, ...], what: str) -> None:
        if status in ((wanted,) if isinstance(wanted, int) else wanted):
            return
        if status == 401:
            reason = "refused our credentials" if self._auth else "asks for credentials (SCRAPYD_USERNAME/PASSWORD)"
        else:
            reason = f"answered HTTP {status}"
        # A 5xx may come from a proxy in front of the node that gave up waiting for it: the node
        # may have done what was asked. Ask it before trying again.
        raise ScrapydError(self.name, f"{what.split('?')[0]}: {reason}", http_status=status,
                           maybe_delivered=status >= 500)  # fmt: skip

    def _request(self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
                 limit: int = MAX_ANSWER_BYTES) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        import http.client

        sent = dict(headers or {})
        if self._auth:
            sent["Authorization"] = self._auth
        if self._https:
            import ssl

            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise ScrapydError(self.name, f"unreachable ({_reason(exc)})", unreachable=True) from None
            try:
                conn.request(method, self._prefix + path, body=body, headers=sent)
                response = conn.getresponse()
                data = response.read(limit + 1) if method != "HEAD" else b""
            except (OSError, http.client.HTTPException) as exc:
                raise ScrapydError(self.name, f"no answer to {path.split('?')[0]} ({_reason(exc)})",
                                   maybe_delivered=True) from None  # fmt: skip
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            conn.close()


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words (never a header, never a credential)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
