"""SCHEDULER_NOTIFY_CONFIG's file: the rules it must meet (a secret: it holds the channels' tokens)
and its text, read at start like the other secret files, and again on SIGHUP or when it changes
(`stamp`; daemon/telemetry/notify.py's `refresh`); what the daemon asks of it is
daemon/telemetry/channels.py's."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from daemon.settings.secret import Secret

MAX_BYTES = 64 * 1024
ALLOWED = (f"a regular file of this user (or root), not readable by others, of at most {MAX_BYTES // 1024} KiB: an "
           "Apprise configuration (TEXT: `[tag,tag=]URL` per line; or YAML)")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class NotifyConfig:
    """The configuration file's path and text (the text never shows itself)."""

    path: Path
    text: Secret

    def __repr__(self) -> str:
        return f"NotifyConfig({str(self.path)!r})"


def read_config(path: Path) -> tuple[str | None, str]:
    """(why the file will not do, or None; its text). The rules of a secret file, and more: it holds
    tokens, so it must be this user's (or root's, as a mounted secret) and not readable by others.
    Never opens what is not a regular file (a FIFO would block the start)."""
    try:
        if not stat.S_ISREG((st := os.stat(path)).st_mode):
            return "it is not a regular file", ""
        if st.st_uid not in (os.getuid(), 0):
            return f"it belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}) or root", ""
        if st.st_mode & stat.S_IROTH:
            return f"others may read it (mode {stat.S_IMODE(st.st_mode):04o}; chmod o-r)", ""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return "it is not a regular file", ""
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return exc.strerror or type(exc).__name__, ""
    if len(data) > MAX_BYTES:
        return f"it holds more than {MAX_BYTES // 1024} KiB", ""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "it is not UTF-8 text", ""
    if not text.strip():
        return "it is empty", ""
    return None, text


def stamp(path: Path) -> tuple[int, int, int]:
    """What tells that the file changed (inode, size, modification time): a file replaced, as a
    mounted secret is, or edited in place. Gone or unreadable: a change too, which reading explains."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, -1, 0)
    return (info.st_ino, info.st_size, info.st_mtime_ns)
