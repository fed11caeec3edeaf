"""Logging: structlog events on stdout, JSON when not on a terminal, readable lines otherwise.

Events have stable snake_case names with data in fields. Where users grep for a phrase (the
design's "Last run was ..."), the phrase travels in the `message` field. The standard library's
logging goes through the same pipeline.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class Once:
    """One-off notices (standing by, disabled, waiting for a previous runner): each event is logged
    once until it is forgotten, so a state that lasts for hours costs one line, not one per tick."""

    def __init__(self, log: structlog.types.BindableLogger) -> None:
        self.log = log
        self._said: set[str] = set()

    def say(self, event: str, message: str) -> None:
        if event not in self._said:
            self._said.add(event)
            self.log.info(event, message=message)

    def forget(self, event: str) -> None:
        self._said.discard(event)
