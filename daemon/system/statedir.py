"""The state directory (heartbeat, crawl stats, the offline journal), trusted only while it is ours.

Whoever may write there decides what the daemon believes: a journal file is replayed into the
history as crawls that happened, a stats file decides whether a crawl succeeded, and the heartbeat
is touched at its path. So, as PostgreSQL does with its data directory, the daemon refuses a state
directory that another user owns or that group or others may write, and creates its own with mode
0700. Inside it, a file the daemon did not write (another owner, a symbolic link, anything but a
regular file) is never read, replayed or followed: it is left where it is and refused with a
`state_file_refused` event. Every file is opened without following a symbolic link.

The default is private to the user: $XDG_STATE_HOME/persistent-scheduler, else
~/.local/state/persistent-scheduler (the image sets /var/lib/persistent-scheduler, a volume).
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from collections.abc import Mapping
from pathlib import Path

import structlog

log = structlog.get_logger("daemon.statedir")

APP_NAME = "persistent-scheduler"
DIRECTORY_MODE = 0o700  # the directories the daemon creates: this user's alone
FILE_MODE = 0o600
SHARED_WRITE = stat.S_IWGRP | stat.S_IWOTH
# Never follow a symbolic link, never become a terminal's process, never wait on a FIFO.
_NO_SURPRISES = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_REFUSALS_KEPT = 1000  # each refused file is logged once; the memory of them stays bounded


class UntrustedDirectory(PermissionError):
    """A directory of the daemon's state that is not this user's alone."""


class RefusedFile(PermissionError):
    """A file in the state directory that the daemon did not write: never read, never followed."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def default_directory(env: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/persistent-scheduler, else <home>/.local/state/persistent-scheduler, where
    home is $HOME or, without one, this user's home in the password database. Relative or
    unprintable values are ignored, as the XDG specification asks."""
    state_home = _absolute(env.get("XDG_STATE_HOME"))
    if state_home is not None:
        return Path(state_home) / APP_NAME
    home = _absolute(env.get("HOME")) or _absolute(_home_of_this_user())
    if home is not None:
        return Path(home) / ".local" / "state" / APP_NAME
    return Path("/var/lib") / APP_NAME  # no home at all: where the image keeps it


def directory_problem(path: Path) -> str | None:
    """Why `path` cannot be the state directory, or None. Read-only: a directory that does not exist
    yet is fine when its nearest existing parent is writable (the daemon creates it, mode 0700)."""
    for candidate in (path, *path.parents):
        try:
            info = os.stat(candidate)
        except FileNotFoundError:
            continue  # to be created: its parent decides
        except OSError as exc:  # ENOTDIR (a file on the way), ENAMETOOLONG, ELOOP, EACCES
            return why(exc)
        if not stat.S_ISDIR(info.st_mode):
            return f"{candidate} is {kind(info.st_mode)}, not a directory"
        if not os.access(candidate, os.W_OK | os.X_OK):
            return f"{candidate} is not writable by this user"
        return _untrusted(candidate, info) if candidate == path else None
    return "no parent directory exists"


def make_directory(path: Path, *, follow_symlink: bool = True) -> None:
    """Create `path` with mode 0700 (missing parents as `mkdir -p` makes them), or take it as it is
    when this user owns it and nobody else may write it; else raise UntrustedDirectory. The state
    directory itself may be a symbolic link an administrator made (its target is checked); a
    directory inside it may not (`follow_symlink=False`)."""
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    info = os.stat(path) if follow_symlink else os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise UntrustedDirectory(f"{path} is a symbolic link")
    problem = _untrusted(path, info)
    if problem is not None:
        raise UntrustedDirectory(problem)


def open_own(path: Path, flags: int, mode: int = FILE_MODE) -> int:
    """`os.open` that never follows a symbolic link at `path` and keeps only a regular file this
    user owns; raises RefusedFile naming why (after closing it), or the OSError of the open."""
    try:
        fd = os.open(path, flags | _NO_SURPRISES, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a symbolic link
            raise RefusedFile(path, "it is a symbolic link") from None
        raise
    problem = not_ours(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise RefusedFile(path, problem)
    return fd


_refused: set[tuple[str, str]] = set()


def refuse(path: Path, reason: str) -> None:
    """Log that a file in the state directory was not used (once per file and reason)."""
    key = (str(path), reason)
    if key in _refused:
        return
    if len(_refused) >= _REFUSALS_KEPT:
        _refused.clear()
    _refused.add(key)
    log.warning("state_file_refused", file=str(path), reason=reason,
                message="A file in the state directory that this daemon did not write: not used")  # fmt: skip


def _untrusted(path: Path, info: os.stat_result) -> str | None:
    me = os.geteuid()
    if info.st_uid == me and not info.st_mode & SHARED_WRITE:
        return None
    return (
        f"{path} is owned by {user_name(info.st_uid)} with mode {stat.S_IMODE(info.st_mode):04o}; required: owned "
        f"by {user_name(me)}, the user the daemon runs as, and writable by nobody else (e.g. mode 0700)"
    )


def not_ours(info: os.stat_result) -> str | None:
    """Why a file with this (l)stat is not one the daemon wrote, or None."""
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return f"it is {kind(info.st_mode)}"
    if info.st_uid != os.geteuid():
        return f"it is owned by {user_name(info.st_uid)}, not by {user_name(os.geteuid())}, the user the daemon runs as"
    return None


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _home_of_this_user() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return None


def _absolute(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value.startswith("/") and value.isprintable() else None


def why(exc: OSError) -> str:
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is not a directory"
    return exc.strerror or type(exc).__name__


def kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )  # fmt: skip
    return next((text for test, text in kinds if test(mode)), "not a regular file")
