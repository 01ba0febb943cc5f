"""How a service's log lines look: the text format, or one JSON object a line (``LOG_FORMAT``).

A JSON line holds ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``msg``; on
a line logged for a run (``agentstream.runtime.log_context``) also ``run``, ``org`` and
``attempt`` (null where the work does not know it, e.g. an SSE stream spans attempts); ``exc``
holds a traceback, ``stack`` a stack, when the line has one.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

import msgspec

from agentstream.runtime.log_context import RunContextFilter
from agentstream.runtime.settings import LogFormat

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's line breaks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (without its newline)."""
        line: dict[str, Any] = {
            "ts": _utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        run = getattr(record, "run", None)
        if run is not None:
            line["run"] = run
            line["org"] = getattr(record, "org", None)
            line["attempt"] = getattr(record, "attempt", None)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # str(): a value of another type (an exception in an extra) must not lose the line.
        return msgspec.json.encode(line, enc_hook=str).decode()


def _utc_time(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def log_handler(log_format: LogFormat) -> logging.Handler:
    """A handler writing to stderr in ``log_format``, each record annotated with its run."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(RunContextFilter())
    return handler


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log at ``level`` to stderr in ``log_format``; in JSON, what would bypass logging (Python
    warnings, uncaught exceptions, the Temporal SDK core's lines) goes through it too."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(log_format)], force=True)
    if log_format == "json":
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        forward_temporal_core_logs()


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger("agentstream").critical(
        "uncaught exception", exc_info=(kind, value, traceback)
    )


def forward_temporal_core_logs() -> None:
    """Send the Temporal SDK core's own log lines (written to stderr in its format otherwise)
    through Python logging, at the SDK's default levels; before any Temporal client exists."""
    from temporalio.runtime import (
        LogForwardingConfig,
        LoggingConfig,
        Runtime,
        TelemetryConfig,
        TelemetryFilter,
    )

    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    logging_config = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding
    )
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=logging_config)), error_if_already_set=False
    )
