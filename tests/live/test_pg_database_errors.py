"""PostgreSQL failures provoked for real, seen over HTTP: each its own problem and log line.

* A deadlock: the test holds an advisory lock that a trigger (installed by the test in the run's
  own database) makes the request wait for while it holds the incident's row; the test then
  waits for that row. PostgreSQL breaks the cycle by aborting the request (SQLSTATE 40P01).
  With ``KOKOMA_DB_RETRY_ATTEMPTS=1`` the client sees it: 503 ``database-deadlock``.
* Too many connections: a role with ``CONNECTION LIMIT 0`` (SQLSTATE 53300):
  503 ``database-overloaded``; /readyz says the same, not "unreachable".

Collected on PostgreSQL only (tests/live/conftest.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.db import get_engine
from tests.factories import make_incident, seed_reference
from tests.live.conftest import LiveServer
from tests.live.test_database_errors import (
    assert_problem,
    impatient_postgres_env,
    logged_failure,
)

API = "/api/v1"
LOCK = 424242
WAITING_TITLE = "waits for the test"


@pytest.fixture
def waiting_trigger() -> Iterator[None]:
    with get_engine().begin() as conn:
        conn.execute(
            text(f"""
            CREATE OR REPLACE FUNCTION kokoma_test_wait() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.title = '{WAITING_TITLE}' THEN PERFORM pg_advisory_xact_lock({LOCK});
                END IF;
                RETURN NEW;
            END $$""")
        )
        conn.execute(
            text("""
            CREATE TRIGGER kokoma_test_wait AFTER UPDATE ON incident
            FOR EACH ROW EXECUTE FUNCTION kokoma_test_wait()""")
        )
    try:
        yield
    finally:
        with get_engine().begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS kokoma_test_wait ON incident"))
            conn.execute(text("DROP FUNCTION IF EXISTS kokoma_test_wait()"))


def _wait_for_advisory_waiter(conn: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = :lock"
            ),
            {"lock": LOCK},
        ).scalar_one()
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("the request never waited for the test's lock")


def test_deadlock_is_named_and_logged(
    live_server: LiveServer,
    admin_key: dict[str, str],
    waiting_trigger: None,
    migrated_database: str,
) -> None:
    seed_reference()
    incident = make_incident()
    url = live_server(env=impatient_postgres_env(migrated_database))
    responses: list[httpx.Response] = []

    def patch() -> None:
        with httpx.Client(base_url=url, headers=admin_key, timeout=60) as client:
            responses.append(
                client.patch(f"{API}/incidents/{incident.id}", json={"title": WAITING_TITLE})
            )

    engine = get_engine()
    with engine.connect() as holder, engine.connect() as watcher:
        transaction = holder.begin()
        # The request's backend (deadlock_timeout 0.1 s) finds the cycle, not this one.
        holder.execute(text("SET LOCAL deadlock_timeout = '30s'"))
        holder.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": LOCK})
        request = threading.Thread(target=patch)
        request.start()
        _wait_for_advisory_waiter(watcher)
        holder.execute(
            text("UPDATE incident SET escalation_level = escalation_level WHERE id = :id"),
            {"id": incident.id},
        )
        transaction.rollback()
        request.join(timeout=60)
    (response,) = responses
    body = assert_problem(response, 503, "database-deadlock")
    assert "deadlock" in body["detail"] and "not reachable" not in body["detail"]
    assert logged_failure(url, response)["sqlstate"] == "40P01"
    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        assert client.get(f"{API}/incidents/{incident.id}").json()["title"] == incident.title


@pytest.fixture
def role_without_connections(migrated_database: str) -> Iterator[str]:
    """A login role that may open no connection at all; the server's URL with it."""
    role = f"kokoma_noconn_{uuid.uuid4().hex[:8]}"
    base = make_url(migrated_database)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
    try:
        yield base.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_too_many_connections_is_named_and_logged(
    live_server: LiveServer, admin_key: dict[str, str], role_without_connections: str
) -> None:
    url = live_server(env={"DATABASE_URL": role_without_connections})
    try:
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            read = client.get(f"{API}/incidents")
            body = assert_problem(read, 503, "database-overloaded")
            assert "no more connections" in body["detail"]
            assert logged_failure(url, read)["sqlstate"] == "53300"
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["detail"] == body["detail"]
    finally:
        live_server.stop(url)  # type: ignore[attr-defined]
