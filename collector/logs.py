"""structlog set-up: JSON in containers and pipes, console on a TTY, secrets redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from core.redaction import scrub, scrub_text

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: scrub(v, k) for k, v in event_dict.items()}


class _ScrubFilter(logging.Filter):
    """Redact secrets from stdlib log records (botocore, httpx, urllib3 …)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub_text(record.getMessage())
        record.args = None
        return True


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was set up.

    The progress display of `annexa collect` redirects ``sys.stderr`` while it runs, so
    log lines printed through it appear above the spinner instead of across it.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog (and stdlib logging, which botocore and httpx use)."""
    stream = stream or _CurrentStderr()
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through stdlib; keep them quiet unless debugging.
    logging.basicConfig(
        level=logging.WARNING if level != "debug" else logging.DEBUG, stream=stream, force=True
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubFilter())
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "werkzeug", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
