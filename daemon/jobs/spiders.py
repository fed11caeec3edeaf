"""Which spiders the daemon keeps: those `scrapy list` reports, or the subset SCHEDULER_SPIDERS names."""

from __future__ import annotations

import os
import subprocess
import sys

from daemon.settings.config import Settings
from daemon.settings.parsers import SPIDER_NAME
from daemon.system.errors import ConfigError, SpiderDiscoveryError
from daemon.jobs.crawl import crawl_environment

LIST_TIMEOUT_SECONDS = 120


def list_spiders(settings: Settings) -> list[str]:
    """The project's spiders, by running `scrapy list` in it (the daemon never imports scrapy)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "scrapy", "list"],
            cwd=settings.project_dir,
            env=crawl_environment(dict(os.environ)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=LIST_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        raise SpiderDiscoveryError(
            f"`scrapy list` in {settings.project_dir} did not finish within {LIST_TIMEOUT_SECONDS} s"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpiderDiscoveryError(
            f"`scrapy list` in {settings.project_dir} failed (exit code {done.returncode}): {last}"
        )
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return [n for n in names if SPIDER_NAME.fullmatch(n)]


def resolve_spiders(settings: Settings, available: list[str]) -> list[str]:
    """The spiders to keep, in a stable order; an unknown name in SCHEDULER_SPIDERS is an error."""
    if not settings.spiders:
        if not available:
            raise SpiderDiscoveryError(f"the Scrapy project in {settings.project_dir} has no spiders")
        return sorted(available)
    unknown = [name for name in settings.spiders if name not in available]
    if unknown:
        raise ConfigError(
            [
                f"SCHEDULER_SPIDERS={','.join(settings.spiders)!r} is not allowed: "
                f"no spider named {', '.join(unknown)} in {settings.project_dir} "
                f"(it has: {', '.join(sorted(available)) or 'none'})"
            ]
        )
    return list(settings.spiders)
