"""Structured logs: one JSON object per line, carrying the current request id.

The access log (``kokoma.access``) is written by
:class:`app.api.middleware.observability.ObservabilityMiddleware`, one line per request. Log
records never carry API keys, reporter or contact data, nor query strings: callers pass only
identifiers and route templates in ``extra=``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
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

    def emit(self, record: logging.LogRecord) -> None:
        _direct.flush()  # lines written directly before this record come first
        super().emit(record)


class _DirectLines:
    """JSON lines written without a ``LogRecord`` (:func:`write_json_line`): collected during
    one event-loop iteration and written to stdout with one ``write`` at its end."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._scheduled = False

    #: lines held at most (a loop iteration that never yields writes them in chunks)
    MAX_HELD = 256

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) >= self.MAX_HELD
            schedule = not full and not self._scheduled
            if schedule:
                self._scheduled = True
        if full:
            self.flush()
        elif schedule:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop in this thread: now
                self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines, self._scheduled = self._lines, [], False
        if lines:
            stream = sys.stdout
            stream.write("\n".join(lines) + "\n")
            stream.flush()


_direct = _DirectLines()
_direct_formatter = JsonFormatter()
atexit.register(_direct.flush)


def direct_json(logger: logging.Logger) -> bool:
    """Whether ``logger``'s INFO records go to kokoma's JSON handler on stdout and nowhere else
    (the production set-up) — then :func:`write_json_line` may write them, skipping the
    ``LogRecord``, the filters and the handler lock (≈ 15 µs of a request; bench/README.md).
    Anything else configured (a test's capture handler, another handler, a filter, text
    format) sends records the ordinary way."""
    if not logger.isEnabledFor(logging.INFO):
        return False
    current: logging.Logger | None = logger
    while current is not None and current.parent is not None:
        if current.handlers or current.filters or not current.propagate:
            return False
        current = current.parent
    root = logging.getLogger()
    handlers = root.handlers
    return (
        len(handlers) == 1
        and type(handlers[0]) is _KokomaHandler
        and type(handlers[0].formatter) is JsonFormatter
        and len(handlers[0].filters) == 1
        and not root.filters
    )


def write_json_line(logger: logging.Logger, msg: str, extra: dict[str, Any]) -> None:
    """One INFO line as :class:`JsonFormatter` writes it for ``logger.info(msg, extra=extra)``
    (only where :func:`direct_json` said so)."""
    entry: dict[str, Any] = {
        "ts": _direct_formatter._timestamp(time.time()),
        "level": "info",
        "logger": logger.name,
        "msg": msg,
        "request_id": request_id_var.get(),
    }
    for key, value in extra.items():
        entry.setdefault(key, value)
    _direct.add(orjson.dumps(entry, default=str).decode())


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
