"""The settings' file probes: what only the file system can say about a value that parsed well.

Kept apart from the pure parsers (daemon/settings/parsers.py): each probe reads, never writes or
creates anything, and answers why a path will not do (None when it will). The state directory's
probe is daemon/system/statedir.py's own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.settings.parsers import PASSWORD_FILE_MAX_BYTES, has_control_characters
from daemon.system.statedir import directory_problem, kind, why

__all__ = ["directory_problem", "project_problem", "read_password_file"]


def project_problem(directory: Path) -> str | None:
    """Why `directory` holds no Scrapy project, or None."""
    return None if (directory / "scrapy.cfg").is_file() else f"no file {directory / 'scrapy.cfg'}"


def read_password_file(path: Path) -> tuple[str | None, str]:
    """(why the file cannot hold the password, or None; the password: its first line). Never opens
    what is not a regular file: a FIFO would block the start forever, and opening a device may do
    something. A problem names the file, never its content."""
    try:
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            return f"it is {kind(mode)}", ""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(mode := os.fstat(fh.fileno()).st_mode):  # replaced since the stat
                return f"it is {kind(mode)}", ""
            data = fh.read(PASSWORD_FILE_MAX_BYTES + 1)
    except OSError as exc:
        return why(exc), ""
    if len(data) > PASSWORD_FILE_MAX_BYTES:
        return f"it holds more than {PASSWORD_FILE_MAX_BYTES // 1024} KiB", ""
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows editors) is not part of the password
    except UnicodeDecodeError:
        return "it is not UTF-8 text", ""
    # Secret files usually end with one newline; the password itself is the first line.
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line.strip():
        return "its first line is empty", ""
    if has_control_characters(line):
        return "its first line holds control characters", ""
    return None, line
