"""A warm parent seen from the daemon: `WarmParentProcess` starts one (`python -m
daemon.engines.warm_parent`, a plain fork+exec from the thread that runs the batch, so its
PDEATHSIG follows the daemon), asks it for forks over a socket and hands out their exit statuses;
the parent exits by itself after LINGER_S without a crawl, so the idle daemon is untouched. A warm
start gives a `WarmCrawl`, which has what the runner uses of a Popen (`pid`, `stdout`, `stderr`,
`poll`, `wait`, `returncode`). A crawl of a parent that died reports -SIGKILL (PDEATHSIG killed it).
When to use a parent, and when to start cold instead: daemon/engines/crawl_starts.py.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import structlog

log = structlog.get_logger("daemon.warm")

LINGER_S = 60.0  # the parent outlives its last crawl this long, for the crawls due soon after
READY_TIMEOUT_S = 30.0  # its imports; as long as a cold crawl's, which would pay them anyway
FORK_TIMEOUT_S = 10.0
COMMAND_ROOM = 8192  # a blank argument, the room each crawl writes its own command line into (ps shows it)


class WarmUnavailable(Exception):
    """The warm parent cannot start this crawl; the message says why."""

    def __init__(self, reason: str, *, lasting: bool = False) -> None:
        super().__init__(reason)
        self.lasting = lasting  # the project itself is the cause: not tried again until it changes


class WarmCrawl:
    """A crawl forked by the warm parent, seen as a Popen: its pid (the leader of its own process
    group), its two output streams, and its exit code as `Popen.returncode` would give it."""

    def __init__(self, pid: int, stdout_fd: int, stderr_fd: int) -> None:
        self.pid = pid
        self.stdout: IO[str] = open(stdout_fd, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.stderr: IO[str] = open(stderr_fd, encoding="utf-8", errors="replace")  # noqa: SIM115
        self.returncode: int | None = None
        self.cpu_s: float | None = None
        self._ended = threading.Event()

    def _exited(self, returncode: int, cpu_s: float | None) -> None:
        if not self._ended.is_set():
            self.returncode, self.cpu_s = returncode, cpu_s
            self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(["warm crawl", str(self.pid)], timeout or 0)
        return self.returncode  # type: ignore[return-value]


class WarmParentProcess:
    """One warm parent and its control socket. Its reader thread hands out fork replies and exit
    statuses; at end of file every crawl still without a status was killed with the parent."""

    def __init__(self, level: str, cwd: Path, env: dict[str, str], linger_s: float = LINGER_S, *,
                 wait: bool = True) -> None:  # fmt: skip
        """`wait=False`: return once the process is started; its imports go on beside the caller, and
        the first `spawn` waits for them (a parent warmed while the daemon waits for PostgreSQL)."""
        self.level = level
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.engines.warm_parent", str(os.getpid()), str(theirs.fileno()), level,
                 str(linger_s), " " * COMMAND_ROOM],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),), start_new_session=True, text=True, errors="replace",
            )  # fmt: skip
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self.gone: str | None = None  # why it will fork no more (bye, died), once known
        self.died = False  # it did not exit by itself: killed, or crashed
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._crawls: dict[int, WarmCrawl] = {}
        self._pending: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self.forked = 0  # crawls it forked
        self._ready = threading.Event()  # its first message read: ready (reader started), or failed
        self._unready: WarmUnavailable | None = None
        threading.Thread(target=self._pump_stderr, name="warm-parent-stderr", daemon=True).start()
        if wait:
            self._await_ready()
        else:  # read its first message beside the caller, so that one that lingers out is reaped
            threading.Thread(target=self._await_quietly, name="warm-parent-ready", daemon=True).start()

    def _await_quietly(self) -> None:
        try:
            self._await_ready()
        except WarmUnavailable as exc:
            self._unready = exc  # the first spawn says it
        finally:
            self._ready.set()

    def _await_ready(self) -> None:
        """Wait for the parent's imports (its first message); WarmUnavailable if it cannot serve."""
        self._sock.settimeout(max(0.0, READY_TIMEOUT_S - (time.monotonic() - self._started)))
        try:
            first = json.loads(self._sock.recv(1 << 16) or b'{"unusable": "it exited while importing"}')
        except (OSError, ValueError) as exc:
            self._abandon()
            raise WarmUnavailable(f"the warm parent did not start: {type(exc).__name__}") from exc
        finally:
            self._sock.settimeout(None)
        if "unusable" in first:
            self._abandon()
            raise WarmUnavailable(str(first["unusable"]), lasting=True)
        self._ready.set()
        threading.Thread(target=self._read, name="warm-parent", daemon=True).start()
        log.info("warm_parent_started", pid=self.pid, mode=self.level,
                 ready_s=round(time.monotonic() - self._started, 3))  # fmt: skip

    def spawn(self, argv: Sequence[str]) -> WarmCrawl:
        """Fork one crawl of `scrapy ARGV`, its output on two new pipes (the read ends are the crawl's)."""
        if not self._ready.wait(READY_TIMEOUT_S + 1.0):
            raise WarmUnavailable(f"the warm parent was not ready in {READY_TIMEOUT_S:g} s")
        if self._unready is not None:
            raise self._unready
        if self.gone:
            raise WarmUnavailable(self.gone)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            with self._lock:
                self._next_id += 1
                self._pending = (out_r, err_r)
                request = json.dumps({"id": self._next_id, "argv": list(argv)}).encode()
            socket.send_fds(self._sock, [request], [out_w, err_w])
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            raise WarmUnavailable(f"the warm parent took no request ({exc.strerror or type(exc).__name__})") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            reply = self._replies.get(timeout=FORK_TIMEOUT_S)
        except queue.Empty:
            self.kill()  # its crawl, if it forked one, dies with it (PDEATHSIG)
            reply = {"refused": f"the warm parent did not answer in {FORK_TIMEOUT_S:g} s"}
        if "crawl" in reply:
            self.forked += 1
            return reply["crawl"]
        for fd in (out_r, err_r):
            os.close(fd)
        raise WarmUnavailable(str(reply.get("refused") or self.gone or "the warm parent is gone"))

    def _read(self) -> None:
        try:
            while self._dispatch_one():
                pass
        except Exception as exc:  # noqa: BLE001 - untracked crawls must not run on: the parent goes, and they with it
            log.error("warm_parent_unreadable", pid=self.pid, error=type(exc).__name__)
            self.kill()
        died = self.gone is None or self.died
        self.died = died
        self.gone = self.gone or "the warm parent died"
        with self._lock:
            orphans, self._crawls = list(self._crawls.values()), {}
        for crawl in orphans:
            crawl._exited(-signal.SIGKILL, None)  # PDEATHSIG: killed with their parent
        self._replies.put({"refused": self.gone})
        code = self.proc.wait()
        if died:
            log.warning("warm_parent_died", pid=self.pid, exit_code=code, crawls_killed=len(orphans))

    def _dispatch_one(self) -> bool:
        """Hand out the parent's next message; False at its end of file."""
        try:
            data = self._sock.recv(1 << 16)
        except OSError:
            return False
        if not data:
            return False
        message = json.loads(data)
        if "bye" in message:
            self.gone = f"the warm parent exited ({message['bye']})"
        elif "id" in message and "pid" in message:
            with self._lock:
                out_r, err_r = self._pending  # type: ignore[misc]
                crawl = self._crawls[message["pid"]] = WarmCrawl(message["pid"], out_r, err_r)
            self._replies.put({"crawl": crawl})
        elif "id" in message:
            self._replies.put(message)
        elif "status" in message:
            with self._lock:
                crawl = self._crawls.pop(message["pid"], None)
            if crawl is not None:
                crawl._exited(os.waitstatus_to_exitcode(message["status"]), message.get("cpu_s"))
        return True

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                log.info("warm_parent_output", pid=self.pid, line=line.rstrip("\n"))

    def _abandon(self) -> None:
        self.kill()
        self._sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.died = True
        self.gone = self.gone or "the warm parent was stopped"

    def close(self) -> None:
        """Fork nothing more: the parent reaps its crawls and exits."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
