"""The daemon's exceptions. Each docstring is the default message; each class knows its exit code.

`daemon/__main__.py` is the one place that turns them into a message and an exit code.
"""

from __future__ import annotations


class SchedulerError(Exception):
    """The scheduler stopped because of an unexpected error."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    def lines(self) -> list[str]:
        return [str(self)]


class ConfigError(SchedulerError):
    """A setting is invalid."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        return [f"config error: {problem}" for problem in self.problems]


class JobsFileError(ConfigError):
    """The jobs file is invalid."""


class DatabaseUnavailable(SchedulerError):
    """PostgreSQL did not answer in time."""

    exit_code = 3


class MigrationError(SchedulerError):
    """A migration could not be applied."""

    exit_code = 4


class SpiderDiscoveryError(SchedulerError):
    """The Scrapy project's spiders could not be listed."""

    exit_code = 5
