"""Errors that tell the truth, provoked for real against a live server (both databases).

"The database is not reachable" is said only when it is not: an unmigrated database and a
database lock that is not released in time each get their own problem ``type``, a 503 with
``Retry-After``, and a log line that carries the request id and the SQLSTATE.
PostgreSQL-only failures (deadlock, too many connections) are in
``test_pg_database_errors.py``.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.db import get_engine
from tests.factories import incident_body, make_incident, seed_reference, table_counts
from tests.live.conftest import LiveServer, server_output

API = "/api/v1"
PROBLEM = "application/problem+json"


def impatient_postgres_env(migrated_database: str) -> dict[str, str]:
    """A live server whose sessions give up on a lock after 3 s and look for deadlocks after
    0.1 s (libpq ``options``: session settings, not the server's configuration), and that runs
    a request once: what the database says reaches the client. Shared by the timeout and the
    deadlock test (tests/live/test_pg_database_errors.py): one server start for both."""
    options = "-c lock_timeout=3000 -c deadlock_timeout=100"
    url = make_url(migrated_database).update_query_dict({"options": options})
    return {
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "KOKOMA_DB_RETRY_ATTEMPTS": "1",
    }


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{type_}", body
    if status == 503:
        assert int(response.headers["Retry-After"]) >= 1
    return body


def logged_failure(url: str, response: httpx.Response, *, attempts: float = 5.0) -> dict[str, Any]:
    """The server's error log line for ``response`` (matched by its X-Request-ID)."""
    request_id = response.headers["X-Request-ID"]
    deadline = time.monotonic() + attempts
    while True:
        for line in server_output(url).splitlines():
            if request_id in line and line.startswith("{"):
                entry: dict[str, Any] = json.loads(line)
                if entry.get("level") == "error" and entry.get("request_id") == request_id:
                    return entry
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no error log line with request id {request_id}:\n{server_output(url)[-3000:]}"
            )
        time.sleep(0.1)


@pytest.fixture
def unmigrated_database_url(migrated_database: str) -> Iterator[str]:
    """An empty database on the same server (or an empty SQLite file)."""
    if not migrated_database.startswith("postgresql"):
        with tempfile.TemporaryDirectory(prefix="kokoma-empty-") as tmp:
            path = Path(tmp) / "empty.db"
            sqlite3.connect(path).close()
            yield f"sqlite:///{path}"
        return
    base = make_url(migrated_database)
    name = f"kokoma_empty_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_unmigrated_database_says_so(
    live_server: LiveServer, unmigrated_database_url: str, is_postgres: bool
) -> None:
    url = live_server(env={"DATABASE_URL": unmigrated_database_url})
    try:
        with httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": "Bearer kok_whatever"}
        ) as client:
            read = client.get(f"{API}/incidents")
            body = assert_problem(read, 503, "database-not-migrated")
            assert "kokoma migrate" in body["detail"]
            assert int(read.headers["Retry-After"]) >= 10
            entry = logged_failure(url, read)
            assert entry["sqlstate"] == ("42P01" if is_postgres else None)
            assert "sqlstate" in entry

            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "not migrated" in ready.json()["detail"]
    finally:
        live_server.stop(url)  # type: ignore[attr-defined]


def test_lock_held_too_long_is_a_timeout(
    live_server: LiveServer,
    admin_key: dict[str, str],
    migrated_database: str,
    is_postgres: bool,
) -> None:
    if is_postgres:
        _row_lock_timeout_on_postgres(live_server, admin_key, migrated_database)
    else:
        _write_lock_timeout_on_sqlite(live_server, admin_key, migrated_database)


def _write_lock_timeout_on_sqlite(
    live_server: LiveServer, admin_key: dict[str, str], migrated_database: str
) -> None:
    """SQLite: another writer holds the database lock past the busy timeout → database-timeout."""
    seed_reference()
    url = live_server(env={"KOKOMA_SQLITE_BUSY_TIMEOUT_SECONDS": "0.3"})
    before = table_counts()
    holder = sqlite3.connect(make_url(migrated_database).database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            created = client.post(f"{API}/incidents", json=incident_body())
            assert_problem(created, 503, "database-timeout")
            assert "sqlstate" in logged_failure(url, created)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert table_counts() == before


def _row_lock_timeout_on_postgres(
    live_server: LiveServer, admin_key: dict[str, str], migrated_database: str
) -> None:
    """PostgreSQL: a row lock held past ``lock_timeout`` (set for the server's sessions through
    libpq ``options``) → database-timeout, SQLSTATE 55P03."""
    seed_reference()
    incident = make_incident()
    url = live_server(env=impatient_postgres_env(migrated_database))
    with get_engine().connect() as holder, holder.begin():
        holder.execute(
            text("SELECT id FROM incident WHERE id = :id FOR UPDATE"), {"id": incident.id}
        )
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            updated = client.patch(f"{API}/incidents/{incident.id}", json={"title": "Changed"})
            assert_problem(updated, 503, "database-timeout")
            assert logged_failure(url, updated)["sqlstate"] == "55P03"
    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        assert client.get(f"{API}/incidents/{incident.id}").json()["title"] == incident.title
