"""Database outages: 503 problem+json (not a hang, not a 500 with a trace), and recovery by itself.

On a PostgreSQL run, a *private* throwaway server (``initdb`` into a temp dir, its own port and
socket directory) is stopped and started again under a running app — the shared test server is
never touched. On a SQLite run, the database file's directory disappears and comes back. On both
runs a server that accepts TCP connections but never answers shows that connection attempts time
out (``KOKOMA_DB_CONNECT_TIMEOUT_SECONDS``) instead of hanging the request.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.core.config import get_settings
from app.core.db import reset_engine
from app.core.security import key_cache
from tests.factories import make_key

API = "/api/v1/incidents"
#: Far above the configured connect timeout (1 s here), far below "hangs".
NOT_A_HANG_SECONDS = 20


@dataclass
class Outage:
    url: str
    stop: Callable[[], None]
    start: Callable[[], None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    assert path, f"{name} not found: install the PostgreSQL server package"
    return path


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture
def private_postgres() -> Iterator[Outage]:
    tmp = Path(tempfile.mkdtemp(prefix="kokoma-pg-"))
    data, sockets, logfile = tmp / "data", tmp / "sock", tmp / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(  # noqa: S603 - fixed argv of PostgreSQL tools
        _as_postgres(
            [
                _pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"

    def start() -> None:
        subprocess.run(  # noqa: S603 - fixed argv of PostgreSQL tools
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(logfile),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop() -> None:
        subprocess.run(  # noqa: S603 - fixed argv of PostgreSQL tools
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=True,
            capture_output=True,
        )

    start()
    try:
        yield Outage(f"postgresql://postgres@127.0.0.1:{port}/postgres", stop, start)
    finally:
        subprocess.run(  # noqa: S603 - fixed argv of PostgreSQL tools
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def sqlite_outage() -> Iterator[Outage]:
    tmp = Path(tempfile.mkdtemp(prefix="kokoma-sqlite-"))
    live, gone = tmp / "db", tmp / "db-gone"
    live.mkdir()

    def stop() -> None:
        live.rename(gone)
        reset_engine()  # the open connections are lost, as when a volume goes away

    def start() -> None:
        gone.rename(live)

    try:
        yield Outage(f"sqlite:///{live / 'kokoma.db'}", stop, start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def point_app_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """Point settings, engine and a fresh app at another database; restore afterwards."""
    from fastapi.testclient import TestClient

    clients: list[Any] = []

    def point(url: str, *, migrate: bool = True, **settings: object) -> Any:
        monkeypatch.setenv("DATABASE_URL", url)
        for name, value in settings.items():
            monkeypatch.setenv(f"KOKOMA_{name.upper()}", str(value))
        get_settings.cache_clear()
        reset_engine()
        if migrate:
            from app.core.migrations import upgrade

            upgrade("head")
        from app.main import create_app

        client = TestClient(create_app(), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield point
    for client in clients:
        client.__exit__(None, None, None)
    monkeypatch.undo()
    get_settings.cache_clear()
    reset_engine()
    key_cache.clear()


def _assert_unavailable(response: Any, elapsed: float) -> None:
    assert elapsed < NOT_A_HANG_SECONDS
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "/problems/service-unavailable"
    assert body["status"] == 503
    assert response.headers["Retry-After"].isdigit()
    assert "Traceback" not in response.text and "psycopg" not in response.text
    assert response.headers["X-Request-ID"]


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _outage_and_recovery(client: Any, outage: Outage) -> None:
    admin = make_key("admin")
    assert client.get(API, headers=admin).status_code == 200
    assert client.get("/readyz").status_code == 200

    outage.stop()
    response, elapsed = _timed(lambda: client.get(API, headers=admin))
    _assert_unavailable(response, elapsed)
    body = {"title": "x", "district": "alpha", "category": "other", "escalation_level": 1}
    response, elapsed = _timed(lambda: client.post(API, json=body, headers=admin))
    _assert_unavailable(response, elapsed)
    key_cache.clear()  # an uncached key needs the database too: still 503, never 401 or 500
    response, elapsed = _timed(lambda: client.get(API, headers=admin))
    _assert_unavailable(response, elapsed)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert client.get("/healthz").status_code == 200  # the process itself is fine

    outage.start()
    assert client.get(API, headers=admin).status_code == 200  # the first request recovers
    assert client.get("/readyz").status_code == 200


class TestDatabaseOutage:
    def test_503_while_down_and_recovery_by_itself(
        self,
        request: pytest.FixtureRequest,
        is_postgres: bool,
        point_app_at: Callable[..., Any],
    ) -> None:
        fixture = "private_postgres" if is_postgres else "sqlite_outage"
        outage: Outage = request.getfixturevalue(fixture)
        client = point_app_at(outage.url, db_connect_timeout_seconds=1)
        _outage_and_recovery(client, outage)

    def test_unreachable_sqlite_path_is_503(self, point_app_at: Callable[..., Any]) -> None:
        client = point_app_at("sqlite:////nonexistent-kokoma-dir/kokoma.db", migrate=False)
        response, elapsed = _timed(
            lambda: client.get(API, headers={"Authorization": "Bearer kok_whatever"})
        )
        _assert_unavailable(response, elapsed)
        assert client.get("/readyz").status_code == 503

    def test_server_that_never_answers_times_out_to_503(
        self, point_app_at: Callable[..., Any]
    ) -> None:
        with socket.socket() as silent:  # accepts TCP (backlog) but never speaks the protocol
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            port = silent.getsockname()[1]
            client = point_app_at(
                f"postgresql://postgres@127.0.0.1:{port}/kokoma",
                migrate=False,
                db_connect_timeout_seconds=1,
            )
            response, elapsed = _timed(
                lambda: client.get(API, headers={"Authorization": "Bearer kok_whatever"})
            )
            _assert_unavailable(response, elapsed)
            assert client.get("/readyz").status_code == 503
