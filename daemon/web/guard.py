"""What keeps the page's actions safe (issue #23), each piece pure or owning one piece of state:

- `LoginLimiter`: wrong or missing credentials, counted per client address; after
  `LOGIN_FAILURES_ALLOWED` in `LOGIN_WINDOW`, that address is answered 429 until the window passes.
- `Tokens`: each form carries a token bound to the user, the action and the job, signed (HMAC-SHA256)
  with a key the daemon keeps in its state directory, expiring after `TOKEN_LIFETIME`.
- `origin_problem`: the request's `Origin` (or, without one or with `null`, `Sec-Fetch-Site`) must be the page's
  own origin, the very Host it was asked by (which daemon/web/http.py has checked against
  SCHEDULER_HTTP_ALLOWED_HOSTS).

A forged request must pass both the origin and the token; the token alone is never enough.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

LOGIN_FAILURES_ALLOWED = 10  # per client address and window
LOGIN_WINDOW = timedelta(minutes=1)
ADDRESSES_KEPT = 10_000  # the limiter's memory stays bounded: the oldest address is forgotten first
TOKEN_LIFETIME = timedelta(hours=1)
KEY_FILE = "page-actions.key"  # in the state directory, mode 0600, made once
KEY_BYTES = 32


class LoginLimiter:
    """Failed logins per client address in a fixed window. Thread-safe: the server's threads share it."""

    def __init__(self, allowed: int = LOGIN_FAILURES_ALLOWED, window: timedelta = LOGIN_WINDOW) -> None:
        self.allowed = allowed
        self.window = window
        self._failures: OrderedDict[str, tuple[datetime, int]] = OrderedDict()  # address -> (window start, count)
        self._lock = threading.Lock()

    def blocked(self, address: str, now: datetime) -> bool:
        with self._lock:
            start, count = self._failures.get(address, (now, 0))
            return now - start < self.window and count >= self.allowed

    def failed(self, address: str, now: datetime) -> int:
        """Count one failure; returns the address's failures in its window."""
        with self._lock:
            start, count = self._failures.pop(address, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            self._failures[address] = (start, count + 1)
            while len(self._failures) > ADDRESSES_KEPT:
                self._failures.popitem(last=False)
            return count + 1


class Tokens:
    """Form tokens: `<expiry, unix seconds>.<hex HMAC of user, action, job and expiry>`."""

    def __init__(self, key: bytes, lifetime: timedelta = TOKEN_LIFETIME) -> None:
        self._key = key
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return "Tokens(<key hidden>)"

    def make(self, user: str, action: str, job: str, now: datetime) -> str:
        expiry = int((now + self.lifetime).timestamp())
        return f"{expiry}.{self._mac(user, action, job, expiry)}"

    def problem(self, token: str | None, user: str, action: str, job: str, now: datetime) -> str | None:
        """None when `token` is good for this user, action and job now; else why not."""
        expiry_text, _, mac = (token or "").partition(".")
        if not token or not expiry_text.isdigit() or len(expiry_text) > 12:
            return "no token"
        # Compared in constant time whatever else is wrong, so the time taken tells nothing.
        good = hmac.compare_digest(mac.encode(), self._mac(user, action, job, int(expiry_text)).encode())
        if not good:
            return "a token for another user, action or job"
        if int(expiry_text) < now.timestamp():
            return "an expired token (reload the page)"
        return None

    def _mac(self, user: str, action: str, job: str, expiry: int) -> str:
        message = "\0".join((user, action, job, str(expiry))).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def load_key(state_dir: Path) -> bytes:
    """The signing key in the state directory: made once (mode 0600), read after; a key file the
    daemon did not write is refused (statedir.RefusedFile), never trusted."""
    from daemon.system import statedir

    statedir.make_directory(state_dir)  # as the daemon makes it at start: 0700, this user's alone
    path = state_dir / KEY_FILE
    try:
        fd = statedir.open_own(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        fd = statedir.open_own(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            key = fh.read(KEY_BYTES + 1)
        if len(key) == KEY_BYTES:
            return key
        raise statedir.RefusedFile(path, f"it holds {len(key)} bytes, not a key of {KEY_BYTES}") from None
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def origin_problem(host: str | None, origin: str | None, fetch_site: str | None, *, required: bool) -> str | None:
    """None when the request comes from the page's own origin; else why it is refused. `required`:
    a form post must show where it comes from (Origin or Sec-Fetch-Site); a script's JSON request
    without either passes (a browser always sends Origin with a cross-site POST)."""
    if origin is not None and origin != "null":
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"a foreign Origin ({origin[:100]!r})"
        if not host or parts.netloc.lower() != host.strip().lower():
            return f"a foreign Origin ({origin[:100]!r}, not this page's)"
        return None
    # Origin "null": what Chromium sends for the page's own forms under `Referrer-Policy: no-referrer`
    # (as for a sandboxed frame anywhere), so Sec-Fetch-Site decides, which no page can set.
    if fetch_site is not None:
        return None if fetch_site.strip().lower() == "same-origin" else f"a cross-site request ({fetch_site[:30]!r})"
    if origin == "null":
        return "an opaque Origin (null) without Sec-Fetch-Site"
    return "neither Origin nor Sec-Fetch-Site (a browser sends both)" if required else None
