"""Faults a deployment meets, against three uvicorn workers on PostgreSQL: nothing acknowledged
is lost, nothing answers 500.

* 1,000 concurrent creates: every answer is a 201 or a documented 503 with ``Retry-After``;
  every 201 is stored.
* A worker process killed with ``kill -9`` while writes are under way: every acknowledged write
  is stored, and no incident is half written (its competences, its ``created`` event and its
  audit entry are there — one transaction).
* The database restarted while writes are under way (a *private* PostgreSQL server started by
  the test in a temp dir; the shared server is never touched): requests during the outage get
  503 with ``Retry-After``, every 201 is stored, and the service recovers by itself.

Collected on PostgreSQL only (tests/live/conftest.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from app.core.db import get_engine
from app.models.reference import Competence, District
from tests.factories import incident_body, seed_reference
from tests.live.conftest import ROOT, LiveServer, server_process
from tests.test_fault_tolerance import Outage, private_postgres  # noqa: F401 - fixture

API = "/api/v1"
CONCURRENT = 1000
RETRY_ROUNDS = 6
RETRY_CONCURRENCY = 24


def _acceptable(response: httpx.Response) -> bool:
    """A 201, or a 503 that says when to come back."""
    return response.status_code == 201 or (
        response.status_code == 503 and "Retry-After" in response.headers
    )


def _stored_ids(engine: Any = None) -> set[str]:
    with (engine or get_engine()).connect() as conn:
        return {str(i) for i in conn.execute(text("SELECT id FROM incident")).scalars()}


def _half_written(engine: Any = None) -> list[str]:
    """Incidents without their competences, ``created`` event or audit entry."""
    with (engine or get_engine()).connect() as conn:
        return [
            str(i)
            for i in conn.execute(
                text("""
            SELECT i.id FROM incident i
            WHERE NOT EXISTS (SELECT 1 FROM incident_competence c WHERE c.incident_id = i.id)
               OR NOT EXISTS (SELECT 1 FROM incident_event e
                              WHERE e.incident_id = i.id AND e.type = 'created')
               OR NOT EXISTS (SELECT 1 FROM audit_event a WHERE a.resource = 'incident'
                              AND a.action = 'create' AND a.resource_id = CAST(i.id AS TEXT))
        """)
            ).scalars()
        ]


def test_thousand_concurrent_creates_on_three_workers(
    live_server: LiveServer, admin_key: dict[str, str]
) -> None:
    """1,000 creates at once, each with its own ``Idempotency-Key``; a request refused with 503
    is sent again after its ``Retry-After`` (as a client should), a few at a time. In the end
    every incident exists exactly once and every 201 is stored."""
    seed_reference()
    url = live_server(workers=3)
    answers: dict[int, httpx.Response] = {}
    wrong: list[tuple[int, str]] = []

    async def create(client: httpx.AsyncClient, n: int) -> None:
        try:
            response = await client.post(
                f"{API}/incidents",
                json=incident_body(title=f"Burst {n}"),
                headers={"Idempotency-Key": f"burst-{n}"},
            )
        except httpx.TransportError as exc:
            wrong.append((0, repr(exc)))
            return
        if not _acceptable(response):
            wrong.append((response.status_code, response.text[:200]))
        answers[n] = response

    async def retry(gate: asyncio.Semaphore, client: httpx.AsyncClient, n: int) -> None:
        async with gate:
            await create(client, n)

    async def run() -> tuple[int, Counter[str], int]:
        limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=url, headers=admin_key, limits=limits, timeout=httpx.Timeout(180.0)
        ) as client:
            await asyncio.gather(*(create(client, n) for n in range(CONCURRENT)))
            first = sum(1 for r in answers.values() if r.status_code == 201)
            refused = Counter(r.json()["type"] for r in answers.values() if r.status_code == 503)
            rounds = 0
            gate = asyncio.Semaphore(RETRY_CONCURRENCY)
            while rounds < RETRY_ROUNDS:
                again = sorted(n for n, r in answers.items() if r.status_code == 503)
                if not again:
                    break
                rounds += 1
                await asyncio.sleep(max(int(answers[n].headers["Retry-After"]) for n in again))
                await asyncio.gather(*(retry(gate, client, n) for n in again))
            return first, refused, rounds

    started = time.monotonic()
    first, refused, rounds = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert wrong == [], f"{len(wrong)} answers neither 201 nor 503 + Retry-After: {wrong[:3]}"
    acknowledged = {r.json()["id"] for r in answers.values() if r.status_code == 201}
    assert len(acknowledged) == CONCURRENT, f"{CONCURRENT - len(acknowledged)} still refused"
    assert _stored_ids() == acknowledged  # every 201 stored, no request stored twice
    assert _half_written() == []
    print(
        f"\n{CONCURRENT} concurrent creates on 3 workers: {first} × 201 at once, "
        f"503s {dict(refused)}; all created after {rounds} retry round(s), {elapsed:.1f} s"
    )


def _workers_of(supervisor: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        # a killed worker stays a zombie (state Z) until its supervisor reaps it
        if int(fields[1]) == supervisor and fields[0] != "Z" and b"resource_tracker" not in cmdline:
            children.append(int(stat.parent.name))
    return sorted(children)


def _write_while(
    url: str, headers: dict[str, str], clients: int, until: threading.Event
) -> tuple[list[str], list[tuple[int, str]], Callable[[], None]]:
    """``clients`` threads creating incidents until ``until`` is set: (acknowledged ids,
    unacceptable answers, join)."""
    acknowledged: list[str] = []
    wrong: list[tuple[int, str]] = []

    def client_run() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not until.is_set():
                try:
                    response = client.post(f"{API}/incidents", json=incident_body())
                except httpx.TransportError:
                    continue  # a connection that died with its process: not acknowledged
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                elif not _acceptable(response):
                    wrong.append((response.status_code, response.text[:200]))

    threads = [threading.Thread(target=client_run) for _ in range(clients)]
    for thread in threads:
        thread.start()

    def join() -> None:
        until.set()
        for thread in threads:
            thread.join(timeout=60)

    return acknowledged, wrong, join


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_worker_killed_mid_write_loses_nothing_acknowledged(
    live_server: LiveServer, admin_key: dict[str, str]
) -> None:
    seed_reference()
    url = live_server(workers=3)
    supervisor = server_process(url).pid
    workers = _workers_of(supervisor)
    assert len(workers) == 3, workers

    stop = threading.Event()
    acknowledged, wrong, join = _write_while(url, admin_key, 6, stop)
    try:
        _wait_for(lambda: len(acknowledged) >= 30, 60, "writes under way")
        os.kill(workers[0], signal.SIGKILL)
        before_kill = len(acknowledged)
        _wait_for(lambda: len(acknowledged) >= before_kill + 30, 60, "writes after the kill")
    finally:
        join()
    assert wrong == []
    assert set(acknowledged) <= _stored_ids()
    assert _half_written() == []
    # uvicorn's supervisor replaces the killed worker
    _wait_for(lambda: len(_workers_of(supervisor)) == 3, 60, "the worker to be replaced")
    assert workers[0] not in _workers_of(supervisor)


def _kokoma(database_url: str, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - this interpreter running kokoma's CLI
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url},
        timeout=120,
    )
    return done.stdout.strip()


def test_database_restart_mid_write_loses_nothing_acknowledged(
    live_server: LiveServer,
    private_postgres: Outage,  # noqa: F811 - the fixture
) -> None:
    database_url = make_url(
        private_postgres.url.replace("postgresql://", "postgresql+psycopg://", 1)
    ).render_as_string(hide_password=False)
    _kokoma(database_url, "migrate")
    engine = create_engine(database_url, pool_pre_ping=True)
    try:
        with Session(engine) as session:
            session.add(District(code="alpha", name="Alpha", city="Teststadt"))
            session.add(Competence(code="mediation", name="Mediation"))
            session.commit()
        key = _kokoma(database_url, "api-key", "create", "--role", "admin", "--name", "restart")
        url = live_server(
            env={"DATABASE_URL": database_url, "KOKOMA_DB_CONNECT_TIMEOUT_SECONDS": "1"}
        )
        headers = {"Authorization": f"Bearer {key}"}
        stop = threading.Event()
        acknowledged, wrong, join = _write_while(url, headers, 4, stop)
        try:
            _wait_for(lambda: len(acknowledged) >= 20, 60, "writes under way")
            private_postgres.stop()
            time.sleep(1.0)
            private_postgres.start()
            before = len(acknowledged)
            _wait_for(lambda: len(acknowledged) >= before + 20, 60, "writes after the restart")
        finally:
            join()
            live_server.stop(url)  # type: ignore[attr-defined]
        assert wrong == []
        assert set(acknowledged) <= _stored_ids(engine)
        assert _half_written(engine) == []
    finally:
        engine.dispose()
