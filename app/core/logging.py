"""Structured logs: one JSON object per line, carrying the current request id.

The access log (``kokoma.access``) is written by
:class:`app.api.middleware.observability.ObservabilityMiddleware`, one line per request. Log
records never carry API keys, reporter or contact data, nor query strings: callers pass only
identifiers and route templates in ``extra=``.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

#: The id of the request being served (``-`` outside a request).
request_id_var: ContextVar[str] = ContextVar("kokoma_request_id", default="-")

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "color_message", "taskName"}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", …extra}`` on one line."""

    _second = -1
    _prefix = ""

    def _timestamp(self, created: float) -> str:
        # As datetime.isoformat(timespec="milliseconds") in UTC; the date part once a second.
        second = int(created)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class _KokomaHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stdout`` (test runners swap it) and marks the handler we
    installed, so that configuring twice replaces it."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        return None


def resolve_format(fmt: str) -> str:
    """``auto`` → ``text`` when stdout is a terminal (a person reads it), else ``json``."""
    if fmt != "auto":
        return fmt
    isatty = getattr(sys.stdout, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Install one stdout handler on the root logger (JSON or plain text, see
    :func:`resolve_format`); idempotent."""
    fmt = resolve_format(fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _KokomaHandler):
            root.removeHandler(handler)
    handler = _KokomaHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither format prints the caller's file, line, thread or process: skip collecting them
    # (a stack walk per record — a third of the cost of an access-log line; bench/README.md).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # uvicorn's own loggers go through the same handler; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every URL at INFO; webhook subscription URLs may carry tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
