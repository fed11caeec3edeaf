"""The warm parent: a process that imports Scrapy once and forks each crawl from it
(`SCHEDULER_CRAWL_START=warm`, the default; design: README "How a crawl starts").

Run by the daemon (daemon/engines/warm.py) as `python -m daemon.engines.warm_parent DAEMON_PID SOCKET_FD LEVEL
LINGER_S`, a plain fork+exec, so it starts with one thread and is never the daemon itself (which has
threads and must not fork). LEVEL is `warm` (Scrapy, its commands and the components its default
settings name: no code of the user's project) or `warm-project` (also the project's settings, the
components they name and its spider modules).

Protocol on the SOCK_SEQPACKET socket, one JSON object a message:
  parent -> daemon  {"ready": pid} | {"unusable": reason}  once, after the preload
  daemon -> parent  {"id", "argv"} with the crawl's stdout and stderr write ends (SCM_RIGHTS)
  parent -> daemon  {"id", "pid"} | {"id", "refused": reason}
  parent -> daemon  {"pid", "status", "cpu_s"} when a crawl has exited (a raw wait status)
  parent -> daemon  {"bye": reason} before it exits on its own (linger over, or told to drain)
End of file from the daemon means "fork nothing more": the parent reaps its crawls and exits.

Before each fork it checks the rules (design §4): no Twisted reactor, no asyncio event loop, one
thread, no descriptor besides its own. Each crawl is a child in a process group of its own, with
PDEATHSIG toward this parent (which has PDEATHSIG toward the daemon), signals and `__main__` as at
interpreter start, and the exit code the interpreter would give. Imports only the stdlib at top level.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time

PR_SET_PDEATHSIG = 1
COMPONENT_SETTINGS = ("DOWNLOAD_HANDLERS_BASE", "DOWNLOADER_MIDDLEWARES_BASE", "SPIDER_MIDDLEWARES_BASE",
                      "EXTENSIONS_BASE", "ITEM_PIPELINES_BASE", "DOWNLOAD_HANDLERS", "DOWNLOADER_MIDDLEWARES",
                      "SPIDER_MIDDLEWARES", "EXTENSIONS", "ITEM_PIPELINES")  # fmt: skip
CLASS_SETTINGS = ("STATS_CLASS", "SCHEDULER", "DUPEFILTER_CLASS", "SCHEDULER_PRIORITY_QUEUE",
                  "SCHEDULER_DISK_QUEUE", "SCHEDULER_MEMORY_QUEUE", "DOWNLOADER", "LOG_FORMATTER",
                  "REQUEST_FINGERPRINTER_CLASS", "TWISTED_DNS_RESOLVER", "ITEM_PROCESSOR", "SPIDER_LOADER_CLASS",
                  "DOWNLOADER_CLIENTCONTEXTFACTORY", "HTTPCACHE_STORAGE", "HTTPCACHE_POLICY")  # fmt: skip


def die_with_parent(parent_pid: int) -> None:
    """PDEATHSIG: the kernel SIGKILLs this process when its parent dies; exit now if it already did."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def preload(level: str) -> None:
    """Import what every crawl imports (design §1, levels L2 and L4), under Scrapy's hook that makes
    an import of `twisted.internet.reactor` fail instead of installing a reactor here."""
    import importlib
    import pkgutil

    from scrapy.utils.reactorless import install_reactor_import_hook, uninstall_reactor_import_hook

    hook = install_reactor_import_hook()
    try:
        import scrapy.__main__  # noqa: F401  (scrapy.cmdline, scrapy.crawler)
        import scrapy.commands
        from scrapy.settings import Settings, default_settings
        from scrapy.utils.misc import load_object

        for module in pkgutil.iter_modules(scrapy.commands.__path__):
            importlib.import_module(f"scrapy.commands.{module.name}")
        importlib.import_module("daemon.scrapy_stats")
        settings = Settings()
        if level == "warm-project":
            from scrapy.utils.project import get_project_settings
            from scrapy.spiderloader import get_spider_loader

            settings = get_project_settings()
            get_spider_loader(settings)  # imports every spider module
        for name in COMPONENT_SETTINGS:
            components = settings.getdict(name) or (vars(default_settings).get(name) or {})
            for path in [*components, *components.values()]:  # middlewares name them as keys, handlers as values
                _load(load_object, path)
        for name in CLASS_SETTINGS:
            _load(load_object, settings.get(name))
    finally:
        uninstall_reactor_import_hook(hook)
    import gc

    gc.collect()
    gc.freeze()  # keeps the pages shared with the crawls on long ones (design §4, rule 12)


def _load(load_object, path) -> None:  # noqa: ANN001
    if isinstance(path, str):
        try:
            load_object(path)
        except Exception:  # noqa: BLE001 - a component missing its extra (h2): the crawl finds out as cold
            pass


def broken_rule(fds: set[str]) -> str | None:
    """Why forking now would not give a crawl equal to a cold one, or None (design §4, rules 1-4)."""
    if "twisted.internet.reactor" in sys.modules:
        return "a Twisted reactor is installed in the warm parent"
    events = sys.modules.get("asyncio.events")
    policy = getattr(events, "_event_loop_policy", None)
    if policy is not None and getattr(getattr(policy, "_local", None), "_loop", None) is not None:
        return "an asyncio event loop exists in the warm parent"
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return f"the warm parent has {threads} threads"
    now = open_fds()
    if now != fds:
        return f"the warm parent holds other descriptors ({len(now - fds)} more, {len(fds - now)} fewer)"
    return None


def open_fds() -> set[str]:
    """This process's descriptors (the listing's own, closed by the time it is looked at, left out)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        found.add(name)
    return found


class WarmParent:
    def __init__(self, daemon_pid: int, sock: socket.socket, level: str, linger_s: float) -> None:
        self.daemon_pid = daemon_pid
        self.sock = sock
        self.level = level
        self.linger_s = linger_s
        self.children: set[int] = set()
        self.draining = False
        self.idle_since = time.monotonic()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()
        self.fds: set[str] = set()

    def send(self, message: dict) -> None:
        try:
            self.sock.send(json.dumps(message).encode())
        except OSError:
            pass  # the daemon is gone; PDEATHSIG ends this process

    def serve(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # only the daemon decides when crawls stop
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        # Its own descriptors: what a crawl may find here at a fork. Anything else (a file or a socket
        # an import opened) would be shared by every crawl: the parent is then unusable.
        self.fds = {str(fd) for fd in (0, 1, 2, self.sock.fileno(), self.wake_r, self.wake_w, self.selector.fileno())}
        problem = broken_rule(self.fds)
        if problem:
            self.send({"unusable": problem})
            return 0
        self.send({"ready": os.getpid()})
        while True:
            if os.getppid() != self.daemon_pid:
                return 0
            if not self.children and self.draining:
                self.send({"bye": "drained"})
                return 0
            timeout = None
            if not self.children:
                timeout = max(0.0, self.idle_since + self.linger_s - time.monotonic())
            events = self.selector.select(timeout)
            if not events and not self.children and time.monotonic() >= self.idle_since + self.linger_s:
                self.send({"bye": "linger"})
                return 0
            for key, _ in events:
                if key.fileobj is self.sock:
                    self.receive()
                else:
                    self.reap()
            self.reap()

    def receive(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, 2)
        except OSError:
            data, fds = b"", []
        if not data:
            self.draining = True
            self.selector.unregister(self.sock)
            return
        request = json.loads(data)
        problem = broken_rule(self.fds | {str(fd) for fd in fds})
        if problem or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self.send({"id": request["id"], "refused": problem or "the request came without its two pipes"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self.become_crawl(parent, request["argv"], fds)  # never returns
        os.setpgid(pid, pid)  # as the child does: the group exists before the daemon hears the pid
        for fd in fds:
            os.close(fd)  # or the crawl's output never reaches end of file
        self.children.add(pid)
        self.send({"id": request["id"], "pid": pid})

    def reap(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            self.children.discard(pid)
            self.send({"pid": pid, "status": status, "cpu_s": usage.ru_utime + usage.ru_stime})
        if not self.children:
            self.idle_since = time.monotonic()

    def become_crawl(self, parent: int, argv: list[str], fds: list[int]) -> None:
        """In the forked child: become `python -m scrapy ARGV` as a cold start would have made it."""
        try:
            die_with_parent(parent)
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            self.selector.close()
            self.sock.close()  # through its object: nothing closes that number again later
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            show_command([sys.executable, "-m", "scrapy", *argv])
            import scrapy.__main__ as scrapy_main
            from scrapy.cmdline import execute

            sys.modules["__main__"] = scrapy_main
            sys.argv = [scrapy_main.__file__, *argv]
        except BaseException:  # noqa: BLE001 - nothing to report to but the crawl's own stderr
            os._exit(1)
        os._exit(run_as_main(execute))


def show_command(words: list[str]) -> None:
    """Write the crawl's command over this process's own (`ps`, /proc/PID/cmdline show the crawl as a
    cold one would be shown), in the room the daemon left with a blank argument; cut when longer."""
    with open("/proc/self/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5) fields 48 and 49)
    data = b"\0".join(os.fsencode(word) for word in words)[: end - start - 1]
    ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)


def exit_code(exc: BaseException | None) -> int:
    """The exit status the interpreter gives a program that ended with `exc` (None: returned)."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0
        return exc.code & 0xFF if isinstance(exc.code, int) else 1
    return 1


def run_as_main(execute) -> int:  # noqa: ANN001
    """Call `execute()` and return the exit code the interpreter would give (design §4, rule 8)."""
    import atexit

    ended: BaseException | None = None
    try:
        execute()
    except SystemExit as exc:
        ended = exc
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt as exc:
        ended = exc
    except BaseException as exc:  # noqa: BLE001 - as the interpreter does: the traceback, then 1
        ended = exc
        trace = exc.__traceback__.tb_next if exc.__traceback__ else None  # from execute() on, not this frame
        sys.excepthook(type(exc), exc.with_traceback(trace), trace)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if isinstance(ended, KeyboardInterrupt):  # as the interpreter does: die of SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return exit_code(ended)


def main(argv: list[str]) -> int:
    daemon_pid, sock_fd, level, linger_s = int(argv[0]), int(argv[1]), argv[2], float(argv[3])
    die_with_parent(daemon_pid)
    sock = socket.socket(fileno=sock_fd)
    try:
        preload(level)
    except BaseException as exc:  # noqa: BLE001 - a project that cannot be preloaded runs cold
        sock.send(json.dumps({"unusable": f"preload failed: {type(exc).__name__}: {exc}"[:300]}).encode())
        return 0
    return WarmParent(daemon_pid, sock, level, linger_s).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
