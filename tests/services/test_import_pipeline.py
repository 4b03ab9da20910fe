"""The import pipeline (app.services.imports.pipeline.Pipeline): the database work of a batch runs on a
thread of its own while later batches are parsed — errors and outcomes must be those of doing it
all in turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.config import get_settings
from app.core.db import session_scope
from app.core.errors import Conflict
from app.core.security import SYSTEM_PRINCIPAL
from app.models.incident import Incident
from app.services.imports import BodyFormat, ImportKind, run_import
from tests.factories import seed_reference

HEADER = "external_id;source;title;district;category;escalation_level"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def body(*keys: str) -> Iterator[bytes]:
    lines = [HEADER, *(f"{key};hotline;Incident {key};alpha;hate_speech;3" for key in keys)]
    yield ("\n".join(lines) + "\n").encode()


def incidents() -> int:
    with session_scope(write=False) as session:
        return session.scalar(select(func.count()).select_from(Incident)) or 0


@pytest.fixture
def small_batches(fixed_clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_reference()
    monkeypatch.setattr(get_settings(), "import_batch_rows", 2)  # many batches in flight


def test_many_small_batches_write_everything_in_file_order(small_batches: None) -> None:
    keys = [f"k-{n:02d}" for n in range(25)]
    with session_scope() as session:
        result = run_import(
            session, ImportKind.incidents, BodyFormat.csv, body(*keys), SYSTEM_PRINCIPAL
        )
    assert (result.created, result.error_count, result.committed) == (25, 0, True)
    with session_scope(write=False) as session:
        rows = session.execute(select(Incident.external_id, Incident.reference)).all()
    by_reference = [key for key, _ in sorted(rows, key=lambda row: row[1])]
    assert by_reference == keys  # references are allocated in file order, batch after batch


def test_a_row_error_after_written_batches_leaves_nothing(small_batches: None) -> None:
    keys = [f"k-{n:02d}" for n in range(9)]
    lines = [
        *(f"{key};hotline;Incident {key};alpha;hate_speech;3" for key in keys),
        "k-bad;hotline;Broken;alpha;hate_speech;12",
    ]
    with session_scope() as session:
        result = run_import(
            session,
            ImportKind.incidents,
            BodyFormat.csv,
            iter([("\n".join([HEADER, *lines]) + "\n").encode()]),
            SYSTEM_PRINCIPAL,
        )
    assert result.committed is False and (result.created, result.updated) == (0, 0)
    assert [(e["row"], e["field"]) for e in result.errors] == [(10, "escalation_level")]
    assert incidents() == 0


def test_a_key_taken_meanwhile_is_reported_as_such(small_batches: None) -> None:
    """Another transaction inserts key k-05 while the import runs. On PostgreSQL the import's COPY
    waits for it and then meets the unique key: the answer is the conflict (409), not the
    aborted-transaction error of the look-ups queued behind that COPY; nothing of the import is
    written. On SQLite writers take turns, so the import finds k-05 stored and updates it."""
    keys = [f"k-{n:02d}" for n in range(10)]
    outcome: dict[str, Any] = {}
    with session_scope() as holder:
        # a plain row (no reference counter involved, which would make the import wait earlier)
        holder.add(
            Incident(
                reference="KOK-1999-00001",
                title="Taken",
                district="alpha",
                category="hate_speech",
                escalation_level=2,
                source="hotline",
                external_id="k-05",
                reported_at=NOW,
                status_changed_at=NOW,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        holder.flush()

        def run() -> None:
            try:
                with session_scope() as session:
                    outcome["result"] = run_import(
                        session,
                        ImportKind.incidents,
                        BodyFormat.csv,
                        body(*keys),
                        SYSTEM_PRINCIPAL,
                    )
            except BaseException as exc:  # handed to the test's thread
                outcome["error"] = exc

        importer = threading.Thread(target=run)
        importer.start()
        time.sleep(0.5)  # the import is now waiting for the holder (unique key or write lock)
    importer.join(30)
    assert not importer.is_alive()
    if holder.get_bind().dialect.name == "postgresql":
        assert isinstance(outcome.get("error"), Conflict), outcome
        assert incidents() == 1
    else:
        result = outcome["result"]
        assert (result.created, result.updated, result.error_count) == (9, 1, 0)
        assert incidents() == 10


def test_incidents_created_while_an_import_runs(small_batches: None) -> None:
    """An import reserves its references in blocks. On PostgreSQL a block is reserved in a short
    transaction of its own, so an incident created through the API while a long import is open
    gets its reference at once instead of waiting for the import to commit. On SQLite writers take
    turns: the creation waits for the import's write lock. Either way every reference is unique."""
    from app.models.incident import IncidentCreate
    from app.services.incidents import IncidentService
    from tests.factories import incident_body

    first_rows, go_on = threading.Event(), threading.Event()
    keys = [f"k-{n:02d}" for n in range(6)]

    def slow_body() -> Iterator[bytes]:
        lines = [f"{key};hotline;Incident {key};alpha;hate_speech;3" for key in keys]
        yield ("\n".join([HEADER, *lines[:4]]) + "\n").encode()  # two batches of two
        first_rows.set()
        assert go_on.wait(30)
        yield ("\n".join(lines[4:]) + "\n").encode()

    outcome: dict[str, Any] = {}

    def run() -> None:
        with session_scope() as session:
            outcome["import"] = run_import(
                session, ImportKind.incidents, BodyFormat.csv, slow_body(), SYSTEM_PRINCIPAL
            )

    def create() -> None:
        with session_scope() as session:
            outcome["created"] = (
                IncidentService(session)
                .create(IncidentCreate(**incident_body()), SYSTEM_PRINCIPAL)
                .reference
            )

    importer = threading.Thread(target=run)
    importer.start()
    assert first_rows.wait(10)
    time.sleep(0.3)  # the import's first batch is prepared: its references are reserved
    creator = threading.Thread(target=create)
    creator.start()
    creator.join(5)
    with session_scope(write=False) as session:
        is_pg = session.get_bind().dialect.name == "postgresql"
    if is_pg:
        assert not creator.is_alive(), "the API creation waited for the import"
        assert "created" in outcome and "import" not in outcome
    go_on.set()
    importer.join(30)
    creator.join(30)
    assert outcome["import"].created == 6
    with session_scope(write=False) as session:
        references = list(session.scalars(select(Incident.reference)))
    assert len(references) == len(set(references)) == 7
    assert outcome["created"] in references


def test_reference_blocks_leave_no_trace_but_the_numbers(small_batches: None) -> None:
    """PostgreSQL: blocks are reserved on a connection of its own with asynchronous commit; that
    connection goes back to the pool with the server's default again. SQLite: blocks are reserved
    in the import's own transaction, so a rolled-back import leaves the counter as it was."""
    from app.core.db import get_engine
    from app.models.system import ReferenceCounter

    keys = [f"k-{n:02d}" for n in range(6)]
    with session_scope() as session:
        run_import(session, ImportKind.incidents, BodyFormat.csv, body(*keys), SYSTEM_PRINCIPAL)
    engine = get_engine()
    if engine.dialect.name == "postgresql":
        idle = engine.pool.checkedin()  # type: ignore[attr-defined]
        assert idle >= 2  # the import's session and the reservations' connection
        connections = [engine.connect() for _ in range(idle)]
        try:
            settings = {c.exec_driver_sql("SHOW synchronous_commit").scalar() for c in connections}
        finally:
            for connection in connections:
                connection.close()
        assert settings == {"on"}
    else:
        bad = [*keys[:4], "k-bad"]
        lines = [
            f"{key};hotline;Incident {key};alpha;hate_speech;{'12' if 'bad' in key else 3}"
            for key in bad
        ]
        with session_scope() as session:
            result = run_import(
                session,
                ImportKind.incidents,
                BodyFormat.csv,
                iter([("\n".join([HEADER, *lines]) + "\n").encode()]),
                SYSTEM_PRINCIPAL,
            )
        assert result.committed is False
        with session_scope(write=False) as session:
            assert session.scalars(select(ReferenceCounter.value)).one() == 6
