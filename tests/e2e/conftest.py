"""End-to-end helpers: the daemon as a real process, started the way the entrypoint starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


class DaemonProcess:
    def __init__(self, env: dict[str, str], workdir: Path, args: tuple[str, ...] = ()):
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
        self.workdir = workdir
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> DaemonProcess:
        log = self.workdir / f"daemon-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", *self.args], cwd=self.workdir, env=self.env,
            stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return "".join(p.read_text() for p in self.logs if p.exists())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon_factory(tmp_path):
    made: list[DaemonProcess] = []

    def make(env: dict[str, str], *args: str) -> DaemonProcess:
        workdir = tmp_path / f"d{len(made)}"
        workdir.mkdir()
        d = DaemonProcess(env, workdir, args)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
