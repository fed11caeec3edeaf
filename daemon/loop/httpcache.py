"""Scrapy's filesystem HTTP cache, seen from outside: the daemon never imports scrapy, so it asks a
`python` subprocess for the project's cache settings once, then works on the files directly.

FilesystemCacheStorage keeps one directory per response, `<HTTPCACHE_DIR>/<spider>/<xx>/<fingerprint>/`,
and judges its age by the mtime of `pickled_meta`; an entry older than HTTPCACHE_EXPIRATION_SECS
(0 = never expires) is one Scrapy would not use again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from daemon.settings.config import Settings
from daemon.jobs.crawl import crawl_environment

FILESYSTEM_STORAGE = "scrapy.extensions.httpcache.FilesystemCacheStorage"
ASK_SETTINGS = (
    "import json; from scrapy.utils.project import get_project_settings, data_path;"
    "s = get_project_settings();"
    "print(json.dumps({'enabled': s.getbool('HTTPCACHE_ENABLED'), 'storage': s.get('HTTPCACHE_STORAGE'),"
    "'dir': data_path(s.get('HTTPCACHE_DIR'), createdir=False), 'expiration': s.getint('HTTPCACHE_EXPIRATION_SECS')}))"
)


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    directory: Path
    expiration_s: int


@dataclasses.dataclass(frozen=True)
class Sweep:
    entries_removed: int
    bytes_freed: int
    bytes_left: int


def project_cache(settings: Settings) -> CacheConfig | None:
    """The project's filesystem cache, or None when it uses none (or another storage)."""
    done = subprocess.run(
        [sys.executable, "-c", ASK_SETTINGS], cwd=settings.project_dir, env=crawl_environment(dict(os.environ)),
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not found["enabled"] or found["storage"] != FILESYSTEM_STORAGE:
        return None
    directory = Path(found["dir"])
    if not directory.is_absolute():
        directory = settings.project_dir / directory
    return CacheConfig(directory, int(found["expiration"]))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sweep(cache: CacheConfig, now: float | None = None) -> Sweep:
    """Delete the entries older than the cache's expiration; report what went and what is left."""
    now = time.time() if now is None else now
    removed = freed = left = 0
    if not cache.directory.is_dir():
        return Sweep(0, 0, 0)
    for meta in cache.directory.glob("*/*/*/pickled_meta"):
        entry = meta.parent
        size = _size(entry)
        if cache.expiration_s > 0 and now - meta.stat().st_mtime > cache.expiration_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
            freed += size
        else:
            left += size
    return Sweep(removed, freed, left)
