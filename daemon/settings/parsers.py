"""Pure parsers for the settings: text in, a typed value out, or `Invalid`.

Each `Parser` carries the text of what it allows, which both an error line and README's settings
table show. Nothing here reads the environment or touches the file system (the probes that do are
in daemon/settings/probes.py), so each parser is a plain function of its text.
"""

from __future__ import annotations

import dataclasses
import math
import re
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.settings.secret import Secret

# A spider name as Scrapy projects spell them; anything else never reaches a command line or SQL.
SPIDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
# PostgreSQL cuts longer names to NAMEDATALEN - 1 bytes without a word.
PG_NAME_MAX_BYTES = 63
PASSWORD_FILE_MAX_BYTES = 64 * 1024
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


class Invalid(ValueError):
    """A value a parser refuses; `detail`, when given, says why beyond what is allowed."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "")
        self.detail = detail


def show(value: str) -> str:
    """A value as it may appear in an error: quoted, shortened, control characters escaped."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    return repr(shown)


def hidden(value: str) -> str:
    return "<hidden>"


@dataclasses.dataclass(frozen=True)
class Parser:
    parse: Callable[[str], Any]  # the text (stripped unless `strip` is False) -> the value, or Invalid
    allowed: str  # what is allowed, in an error line and in README's settings table
    unset: Any = None  # the value of a variable that is unset, or blank, and has no default
    strip: bool = True  # False: taken as it is (a password may begin or end with a space)
    shown: Callable[[str], str] = show  # how a refused value appears in an error

    def then(self, convert: Callable[[Any], Any]) -> Parser:
        """The same parser, its value converted (e.g. a number of hours into a timedelta)."""
        parse = self.parse
        return dataclasses.replace(self, parse=lambda raw: convert(parse(raw)))

    def problem(self, name: str, raw: str, detail: str | None = None) -> str:
        return f"{name}={self.shown(raw)} is not allowed: {self.allowed}" + (f" ({detail})" if detail else "")


def integer(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"[+-]?\d{1,12}", raw) or not low <= int(raw) <= high:
            raise Invalid
        return int(raw)

    return Parser(parse, f"a whole number from {low} to {high}")


def number(unit: str, *, allow_zero: bool = False, high: float = 24 * 365 * 100) -> Parser:
    def parse(raw: str) -> float:
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", raw):
            raise Invalid
        value = float(raw)
        if not math.isfinite(value) or value > high or value < 0 or (value == 0 and not allow_zero):
            raise Invalid
        return value

    bound = "0 or more" if allow_zero else "greater than 0"
    return Parser(parse, f"a number of {unit} {bound} and at most {high:g} (decimals allowed, e.g. 0.5)")


def duration(unit: str, **bounds: Any) -> Parser:
    """A number of `unit` (hours, minutes) as a timedelta."""
    return number(unit, **bounds).then(lambda value: timedelta(**{unit: value}))


def boolean() -> Parser:
    def parse(raw: str) -> bool:
        if raw.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise Invalid
        return raw.lower() in TRUE_WORDS

    return Parser(parse, "true or false (also 1/0, yes/no, on/off)")


def choice(*choices: str, upper: bool = False) -> Parser:
    def parse(raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            raise Invalid
        return value

    return Parser(parse, "one of " + ", ".join(choices))


def only(value: str) -> Parser:
    def parse(raw: str) -> int:
        if raw != value:
            raise Invalid
        return int(raw)

    return Parser(parse, f"only {value} (the scheduler never runs two spider runs at once)")


def timezone() -> Parser:
    def parse(raw: str) -> ZoneInfo:
        try:
            return ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: odd path-like names
            raise Invalid from exc

    return Parser(parse, "an IANA time zone name such as UTC or America/Bogota")


def user_name() -> Parser:
    """A basic-auth user name: printable, no `:` (the header splits there)."""

    def parse(raw: str) -> str:
        if not raw.isprintable() or ":" in raw or len(raw) > 256:
            raise Invalid
        return raw

    def shown(raw: str) -> str:
        # "user:password" pasted whole: never show what follows the colon.
        return show(raw.split(":", 1)[0] + ":...") if ":" in raw else show(raw)

    return Parser(parse, "a user name of printable characters without `:`, at most 256", shown=shown)


def pg_name() -> Parser:
    """A database or role name: PostgreSQL would silently cut a longer one, and connect elsewhere."""

    def parse(raw: str) -> str:
        if not raw.isprintable() or len(raw.encode()) > PG_NAME_MAX_BYTES:
            raise Invalid
        return raw

    return Parser(parse, f"a PostgreSQL name of at most {PG_NAME_MAX_BYTES} bytes in UTF-8 (a longer one is cut "
                         "short), printable characters only (no control or format characters, no space but the plain "
                         "one)")  # fmt: skip


def password() -> Parser:
    """Never shown, not even in part: a stray carriage return or newline (an edited .env) would fail
    every connection, and undecodable bytes would fail it with an encoding error."""

    def parse(raw: str) -> Secret:
        if has_control_characters(raw):
            raise Invalid
        return Secret(raw)

    return Parser(parse, "a password without control characters (a stray carriage return or newline?) or bytes "
                         "that are not UTF-8", unset=Secret(""), strip=False, shown=hidden)  # fmt: skip


def password_file() -> Parser:
    """The file's path; what it holds is read by the probe (daemon/settings/probes.py)."""

    def parse(raw: str) -> Path:
        if not raw.isprintable():
            raise Invalid("the path holds control characters")
        return Path(raw)

    return Parser(parse, f"a regular, readable UTF-8 file of at most {PASSWORD_FILE_MAX_BYTES // 1024} KiB whose "
                         "first line is the password")  # fmt: skip


def absolute_path(allowed: str, *, relative: str | None = None) -> Parser:
    """A printable absolute path; `relative` is what a relative path is told (None: only `allowed`)."""

    def parse(raw: str) -> Path:
        if not raw.isprintable():
            raise Invalid("printable characters only")
        if not raw.startswith("/"):
            raise Invalid(relative)
        return Path(raw)

    return Parser(parse, allowed)


def project_dir() -> Parser:
    def parse(raw: str) -> Path:
        if not raw.isprintable():
            raise Invalid("printable characters only")
        return Path(raw)

    return Parser(parse, "a directory holding a Scrapy project (with a scrapy.cfg)")


def spiders() -> Parser:
    def parse(raw: str) -> tuple[str, ...]:
        names = [part.strip() for part in raw.split(",") if part.strip()]
        if not names or any(not SPIDER_NAME.fullmatch(n) for n in names) or len(set(names)) != len(names):
            raise Invalid
        return tuple(names)

    return Parser(parse, "a comma-separated list of distinct spider names (letters, digits, _ . -, starting with a "
                         "letter or _, at most 100 characters)", unset=())  # fmt: skip


def has_control_characters(value: str) -> bool:
    """Control characters, or surrogates (what bytes that are not UTF-8 become in os.environ)."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in value)


def project_name() -> Parser:
    """Scrapyd's project name: it appears in URLs (/logs/<project>/...) and form fields."""

    def parse(raw: str) -> str:
        if not SPIDER_NAME.fullmatch(raw):
            raise Invalid
        return raw

    return Parser(parse, "a Scrapyd project name (letters, digits, _ . -, starting with a letter or _, at most 100 "
                         "characters)")  # fmt: skip
