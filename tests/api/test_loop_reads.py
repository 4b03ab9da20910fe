"""The event-loop read path (app.core.reads) and the access log's group commit.

Get by id and the incident list answer staff and partners on the loop path when the app runs
with its lifespan; without it (``app.state.reads`` unset) the unit-of-work path answers. Both
must say the same thing — bodies, ETags, cursors, 404s — and a read that shows reporter data
must not be answered before its access entry is committed.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.group_commit import GroupCommitWriter
from app.core.reads import time_text, uuid_text
from app.models.system import AuditEvent
from app.services.privacy import access_writer as access_log
from tests.factories import (
    make_assignment,
    make_incident,
    make_key,
    make_manager,
    make_organisation,
    seed_reference,
)

API = "/api/v1/incidents"


@pytest.fixture
def world() -> dict[str, Any]:
    seed_reference()
    organisation = make_organisation()
    return {
        "organisation": organisation,
        "admin": make_key("admin"),
        "coordinator": make_key("coordinator"),
        "partner": make_key("partner", organisation_id=organisation),
    }


@contextmanager
def unit_of_work_path(client: Any) -> Iterator[None]:
    """Answer from the unit-of-work path, as an app without its lifespan does."""
    app = client.app
    reads, app.state.reads = app.state.reads, None
    try:
        yield
    finally:
        app.state.reads = reads


def access_count() -> int:
    with session_scope(write=False) as session:
        return (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.kind == "access")
            )
            or 0
        )


def varied_incidents(organisation: uuid.UUID, external_id: str = "ext-1") -> list[Any]:
    return [
        make_incident(),
        make_incident(
            title='Ümlaut "quoted" \\ title',
            description="Zeile 1\nZeile 2 — ✓",
            location={"lat": 50.97871, "lon": 11.0328},
            languages=["de", "en", "ar"],
            required_competences=["youth_work", "mediation", "anti_discrimination"],
            occurred_at="2026-03-01T10:15:00.120000Z",
            reported_at="2026-03-01T11:00:00Z",
            organisation_id=str(organisation),
            external_id=external_id,
            source="partner",
        ),
        make_incident(
            reporter=None,
            required_competences=[],
            languages=[],
            district="beta",
            category="hate_speech",
            escalation_level=6,
            organisation_id=str(organisation),
        ),
        make_incident(
            reporter={"name": None, "contact": "kai@example.org", "anonymous": True},
            occurred_at="2026-01-02T03:04:05.000001Z",
        ),
    ]


class TestSameAnswers:
    def test_loop_path_is_on(self, client) -> None:
        assert client.app.state.reads is not None

    def test_reader_sessions(self, client, is_postgres) -> None:
        """The loop readers' sessions: on PostgreSQL in UTC and without JIT (short reads: a
        plan's cost estimate must not buy a compilation on every execution), on SQLite
        read-only."""
        from app.core.reads import ReadStatement

        reads = client.app.state.reads
        if is_postgres:
            shown = client.portal.call(
                reads.all_of,
                [(ReadStatement("SHOW TimeZone"), {}), (ReadStatement("SHOW jit"), {})],
            )
            assert shown == [[("UTC",)], [("off",)]]
        else:
            assert client.portal.call(reads.all, ReadStatement("PRAGMA query_only"), {}) == [(1,)]

    @pytest.mark.parametrize("role", ["admin", "partner"])
    def test_get_by_id(self, client, world, role) -> None:
        incidents = varied_incidents(world["organisation"])
        for incident in incidents:
            url = f"{API}/{incident.id}"
            fast = client.get(url, headers=world[role])
            with unit_of_work_path(client):
                slow = client.get(url, headers=world[role])
            assert fast.status_code == slow.status_code
            assert fast.headers.get("etag") == slow.headers.get("etag")
            assert fast.headers["content-type"] == slow.headers["content-type"]
            assert fast.json() == slow.json()
        # the partner sees its organisation's incidents only (404 for the others, both paths)
        statuses = {client.get(f"{API}/{i.id}", headers=world[role]).status_code for i in incidents}
        assert statuses == ({200} if role == "admin" else {200, 404})

    def test_open_slots(self, client, world) -> None:
        from app.models.incident import Incident

        tandem = make_incident(escalation_level=6)
        single = make_incident(escalation_level=2)
        with session_scope() as session:
            for incident in (tandem, single):
                session.get(Incident, incident.id).status = "dispatched"
        make_assignment(tandem.id, make_manager(), role="lead", status="accepted")
        answers = {}
        for incident in (tandem, single):
            url = f"{API}/{incident.id}"
            fast = client.get(url, headers=world["admin"]).json()
            with unit_of_work_path(client):
                assert client.get(url, headers=world["admin"]).json() == fast
            answers[incident.id] = fast["open_slots"]
        assert answers == {tandem.id: ["co"], single.id: ["lead"]}
        listed = client.get(API, params={"status": "dispatched"}, headers=world["admin"]).json()
        assert {i["id"]: i["open_slots"] for i in listed["items"]} == {
            str(k): v for k, v in answers.items()
        }

    def test_unknown_incident_is_404_problem(self, client, world) -> None:
        response = client.get(f"{API}/{uuid.uuid4()}", headers=world["admin"])
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/not-found"

    @pytest.mark.parametrize("role", ["coordinator", "partner"])
    @pytest.mark.parametrize(
        "query",
        [
            {},
            {"district": "alpha"},
            {"status": ["reported", "triaged"]},
            {"category": "hate_speech", "min_escalation": 5},
            {"reported_after": "2026-03-01T10:59:59Z", "reported_before": "2026-03-01T11:00:01Z"},
        ],
    )
    def test_list_pages(self, client, world, role, query) -> None:
        varied_incidents(world["organisation"], "ext-1")
        varied_incidents(world["organisation"], "ext-2")

        def walk() -> list[Any]:
            pages, cursor = [], None
            while True:
                params = {**query, "limit": 2, **({"cursor": cursor} if cursor else {})}
                response = client.get(API, params=params, headers=world[role])
                assert response.status_code == 200, response.text
                pages.append(response.json())
                cursor = response.json()["next_cursor"]
                if cursor is None:
                    return pages

        fast = walk()
        with unit_of_work_path(client):
            slow = walk()
        assert fast == slow
        assert fast[0]["items"]  # every filter here matches incidents of both roles

    def test_forged_cursor_is_400_on_both_paths(self, client, world) -> None:
        import base64

        forged = base64.urlsafe_b64encode(b"[1,2]").decode().rstrip("=")
        fast = client.get(API, params={"cursor": forged}, headers=world["admin"])
        with unit_of_work_path(client):
            slow = client.get(API, params={"cursor": forged}, headers=world["admin"])
        assert fast.status_code == slow.status_code == 400
        assert fast.json()["type"] == slow.json()["type"] == "/problems/invalid-cursor"


class TestStoredText:
    @pytest.mark.parametrize(
        ("stored", "api"),
        [
            ("2026-03-01 10:15:00.000000", "2026-03-01T10:15:00Z"),
            ("2026-03-01 10:15:00.120000", "2026-03-01T10:15:00.120000Z"),
            ("2026-03-01 10:15:00+00", "2026-03-01T10:15:00Z"),
            ("2026-03-01 10:15:00.12+00", "2026-03-01T10:15:00.120000Z"),
            ("2026-03-01 10:15:00.015+00", "2026-03-01T10:15:00.015000Z"),  # SQLite's length
            ("2026-03-01 10:15:00.000001+00", "2026-03-01T10:15:00.000001Z"),
        ],
    )
    def test_timestamps(self, stored, api) -> None:
        assert time_text(stored) == api

    def test_uuids(self) -> None:
        value = uuid.uuid4()
        assert uuid_text(value.hex) == uuid_text(str(value)) == str(value)


class TestAccessLogGroupCommit:
    def test_entry_committed_before_the_response(self, client, world) -> None:
        incident = make_incident()
        before = access_count()
        assert client.get(f"{API}/{incident.id}", headers=world["admin"]).status_code == 200
        assert access_count() == before + 1  # already committed when the answer arrived

    @pytest.mark.parametrize("path", ["get", "list"])
    def test_failed_commit_sends_no_2xx(self, client, world, monkeypatch, path) -> None:
        incident = make_incident()

        async def refuse(rows: Any) -> None:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("INSERT INTO audit_event", {}, Exception("disk I/O error"))

        monkeypatch.setattr(access_log.writer(client.app.state.reads), "_commit", refuse)
        url = f"{API}/{incident.id}" if path == "get" else API
        response = client.get(url, headers=world["admin"])
        assert response.status_code >= 500
        assert response.headers["content-type"] == "application/problem+json"
        assert "Erika" not in response.text
        assert access_count() == 0

    def test_reads_without_reporter_data_write_nothing(self, client, world) -> None:
        incident = make_incident(reporter=None)
        assert client.get(f"{API}/{incident.id}", headers=world["admin"]).status_code == 200
        assert client.get(API, headers=world["admin"]).status_code == 200
        assert access_count() == 0

    def test_concurrent_reads_share_commits(self, client, world) -> None:
        incidents = [make_incident() for _ in range(12)]
        writer = access_log.writer(client.app.state.reads)
        batches_before = writer.batches
        slow_commit = writer._commit

        async def slower(rows: Any) -> None:  # a commit long enough for the others to queue up
            await asyncio.sleep(0.05)
            await slow_commit(rows)

        writer._commit = slower
        try:
            results: list[int] = []

            def read(incident_id: uuid.UUID) -> None:
                results.append(
                    client.get(f"{API}/{incident_id}", headers=world["admin"]).status_code
                )

            threads = [threading.Thread(target=read, args=(i.id,)) for i in incidents]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            writer._commit = slow_commit
        assert results == [200] * 12
        assert access_count() == 12
        assert writer.batches - batches_before < 12

    def test_a_locked_table_never_blocks_the_loop(self, client, world, is_postgres) -> None:
        """Another writer holds the lock the entry needs: the read waits for it (on a thread on
        SQLite, on the socket on PostgreSQL), other requests are answered meanwhile, and the
        read is answered — with its entry committed — once the lock is released."""
        incident = make_incident()
        before = access_count()
        with holding_write_lock(is_postgres):
            outcome: list[int] = []
            reader = threading.Thread(
                target=lambda: outcome.append(
                    client.get(f"{API}/{incident.id}", headers=world["admin"]).status_code
                )
            )
            reader.start()
            reader.join(0.5)
            assert reader.is_alive() and outcome == []  # waiting for the lock, not answered
            assert client.get("/healthz").status_code == 200  # the loop is free
            assert access_count() == before
        reader.join(30)
        assert outcome == [200]
        assert access_count() == before + 1


@contextmanager
def holding_write_lock(is_postgres: bool) -> Iterator[None]:
    """Another connection holds the lock an ``audit_event`` insert needs."""
    import sqlite3

    from app.core.db import get_engine

    engine = get_engine()
    if is_postgres:
        with engine.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE audit_event IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                conn.rollback()
        return
    raw = sqlite3.connect(str(engine.url.database), isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")  # SQLite's write lock, as a long write transaction holds it
    try:
        yield
    finally:
        raw.execute("ROLLBACK")
        raw.close()


class TestGroupCommitWriter:
    """The writer alone: each caller returns only once a commit holding its rows is done."""

    def test_batches_and_durability(self) -> None:
        committed: list[list[int]] = []

        async def commit(rows: Any) -> None:
            await asyncio.sleep(0.02)
            committed.append([row["n"] for row in rows])

        writer = GroupCommitWriter(commit, max_rows=100)

        async def main() -> None:
            async def one(n: int) -> None:
                await asyncio.sleep(n % 4 * 0.01)  # arriving while a commit runs
                await writer.write([{"n": n}])
                assert any(n in batch for batch in committed)

            await asyncio.gather(*(one(n) for n in range(40)))
            await writer.close()

        asyncio.run(main())
        assert sorted(n for batch in committed for n in batch) == list(range(40))
        assert len(committed) < 40
        assert writer.rows == 40

    def test_failure_reaches_every_caller_of_the_batch(self) -> None:
        async def commit(rows: Any) -> None:
            raise RuntimeError("commit failed")

        writer = GroupCommitWriter(commit)

        async def main() -> list[BaseException | None]:
            return await asyncio.gather(
                *(writer.write([{"n": n}]) for n in range(5)), return_exceptions=True
            )

        outcomes = asyncio.run(main())
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert writer.rows == 0

    def test_max_rows_splits_batches(self) -> None:
        sizes: list[int] = []

        async def commit(rows: Any) -> None:
            await asyncio.sleep(0.01)
            sizes.append(len(rows))

        writer = GroupCommitWriter(commit, max_rows=3)

        async def main() -> None:
            tasks = [asyncio.ensure_future(writer.write([{"n": n}])) for n in range(7)]
            await asyncio.gather(*tasks)

        asyncio.run(main())
        assert sum(sizes) == 7
        assert max(sizes) <= 3


class TestSQLiteSeveralStatements:
    """SQLite's :meth:`all_of` (several statements: a district profile's) runs them one after
    the other on the loop's own read-only connection, as :meth:`all` runs one — no thread, no
    hand-over of the GIL. A database file of its own: the same on either test database."""

    @staticmethod
    def readers(tmp_path: Any, monkeypatch: Any) -> Any:
        import sqlite3

        from app.core.reads import SQLiteReads

        path = tmp_path / "reads.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (n INTEGER)")
            conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
        conn.close()
        reads = SQLiteReads(str(path), 1.0)
        opened = reads._open_reader

        def open_reader() -> sqlite3.Connection:  # tells which thread a statement ran on
            conn = opened()
            conn.create_function("thread_name", 0, lambda: threading.current_thread().name)
            return conn

        monkeypatch.setattr(reads, "_open_reader", open_reader)
        return reads

    def test_several_statements_run_on_the_loop(self, tmp_path, monkeypatch) -> None:
        from app.core.reads import ReadStatement

        reads = self.readers(tmp_path, monkeypatch)
        statement = ReadStatement("SELECT thread_name(), count(*) FROM t WHERE n >= :lo")

        async def run() -> tuple[str, Any, Any]:
            single = await reads.all(statement, {"lo": 5})
            several = await asyncio.gather(
                *(reads.all_of([(statement, {"lo": 0}), (statement, {"lo": 8})]) for _ in range(8))
            )
            await reads.close()
            return threading.current_thread().name, single, several

        loop_thread, single, several = asyncio.run(run())
        assert single == [(loop_thread, 5)]
        names = set()
        for first, second in several:
            ((name, everything),), ((same, few),) = first, second
            assert (everything, few) == (10, 2)
            assert name == same  # one call's statements, one after the other on one thread
            names.add(name)
        assert names == {loop_thread}
        assert reads._conn is None  # closed with the reader

    def test_a_failed_statement_is_reported_and_the_next_call_reads(
        self, tmp_path, monkeypatch
    ) -> None:
        from sqlalchemy.exc import DBAPIError

        from app.core.reads import ReadStatement

        reads = self.readers(tmp_path, monkeypatch)
        good = ReadStatement("SELECT count(*) FROM t")

        async def run() -> Any:
            with pytest.raises(DBAPIError, match="no such table"):
                await reads.all_of([(good, {}), (ReadStatement("SELECT * FROM missing"), {})])
            try:
                return await reads.all_of([(good, {})])
            finally:
                await reads.close()

        assert asyncio.run(run()) == [[(10,)]]
