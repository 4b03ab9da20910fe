"""The reporter access log of the event-loop read path, written by group commit.

A read that returns reporter data records one ``access`` audit entry per incident whose reporter
name or contact the caller sees (PRIVACY.md; the rows of :func:`access_rows`, as
:func:`log_reporter_access` writes them on the unit-of-work path). On the loop path
(:mod:`app.services.incident_reads`) they go to one
:class:`app.core.group_commit.GroupCommitWriter` per process: each request awaits the commit of
the batch holding its entries — so no response is sent without its entry, and a failed commit
becomes an error response — while concurrent reads share one commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from app.core.config import get_settings
from app.core.db import WRITE_OPTION, get_engine
from app.core.group_commit import GroupCommitWriter
from app.core.security import Principal
from app.services.privacy.access_log import (
    _ACCESS_INSERT,
    _SQLITE_ACCESS_WRITER,
    access_rows,
    reporter_fields,
)


def commit_batch(rows: Sequence[dict[str, Any]]) -> None:
    """One transaction, one multi-row ``INSERT``, one commit. On SQLite this process's writers
    of access entries take turns on one lock (as :func:`log_access` does)."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        with (
            _SQLITE_ACCESS_WRITER,
            engine.execution_options(**{WRITE_OPTION: True}).begin() as conn,
        ):
            conn.execute(_ACCESS_INSERT, list(rows))
    else:
        with engine.begin() as conn:
            conn.execute(_ACCESS_INSERT, list(rows))


_writer: GroupCommitWriter | None = None
_writer_lock = threading.Lock()


def writer() -> GroupCommitWriter:
    """The process's writer (created on first use with the settings of that moment)."""
    global _writer
    if _writer is None:
        with _writer_lock:
            if _writer is None:
                settings = get_settings()
                _writer = GroupCommitWriter(
                    commit_batch,
                    max_rows=settings.access_log_batch_rows,
                    max_wait=settings.access_log_batch_wait_ms / 1000,
                    name="kokoma-access-log",
                )
    return _writer


def close_writer() -> None:
    """Commit what is queued and stop the writer thread (app shutdown)."""
    global _writer
    with _writer_lock:
        if _writer is not None:
            _writer.close()
            _writer = None


async def record_reporter_reads(
    principal: Principal, incidents: Iterable[tuple[str, str | None, str | None]]
) -> None:
    """Entries for ``(incident id, reporter name, reporter contact)`` returned with their
    reporter data; returns once they are committed (raises when the commit failed)."""
    rows = access_rows(
        principal,
        "incident",
        [(i, reporter_fields(name, contact)) for i, name, contact in incidents],
    )
    if rows:
        await writer().write(rows)
