"""Live-server tests: the real app under uvicorn in separate processes, spoken to over HTTP.

TestClient runs the whole ASGI call and waits for what FastAPI does after the response is sent;
a client on a socket does not. These tests meet kokoma the way its users do: ``uvicorn
app.main:app`` as its own process (one worker, or several), httpx over loopback, against the
run's migrated test database (SQLite file or PostgreSQL database, see tests/conftest.py).

``live_server(workers=1, env=None)`` starts a server (or reuses the one with the same workers and
env in this test run: starting three workers costs seconds) and returns its base URL; every
server is stopped when the run ends. :func:`server_output` is what a server logged (its JSON log
lines on stdout). ``admin_key`` is an ``Authorization`` header of a fresh admin key.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import make_key

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 90.0  # generous: a loaded 2-core CI machine boots three workers slowly

LiveServer = Callable[..., str]

#: Worker processes the live tests run with: several processes share one database on
#: PostgreSQL; on SQLite (one file, one writer) one process is what is deployed.
ON_POSTGRES = os.environ.get("KOKOMA_TEST_DATABASE_URL", "").startswith("postgres")
WORKER_COUNTS = [1, 3] if ON_POSTGRES else [1]
#: ``test_pg_*.py``: failures only PostgreSQL has (deadlocks, connection limits, its restart).
collect_ignore_glob = [] if ON_POSTGRES else ["test_pg_*.py"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One ``uvicorn app.main:app`` process tree on a free loopback port."""

    def __init__(self, database_url: str, workers: int, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="kokoma-live-", suffix=".log", delete=False
        )
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KOKOMA_RATE_LIMIT_PER_MINUTE": "1000000",
            "KOKOMA_LOG_LEVEL": "WARNING",
            # A failed key lookup is cached briefly; tests create keys right before using them.
            "KOKOMA_API_KEY_CACHE_SECONDS": "0",
            **env,
        }
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter's uvicorn
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_until_up(workers)

    def _wait_until_up(self, workers: int) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited at start:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    if workers > 1:
                        # every worker must have booted, not only the first to answer
                        time.sleep(1.0 + 0.3 * workers)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        output = self.output()
        self.stop()
        raise RuntimeError(f"uvicorn did not answer within {START_SECONDS} s:\n{output}")

    def output(self, tail: int = 5000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a worker that outlived its supervisor
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


_RUNNING: dict[str, ServerProcess] = {}


def server_output(url: str) -> str:
    """Everything the live server at ``url`` has written so far (stdout and stderr)."""
    return _RUNNING[url].output(tail=10_000_000)


def server_process(url: str) -> subprocess.Popen[bytes]:
    """The ``uvicorn`` process (the supervisor when it runs several workers)."""
    return _RUNNING[url].process


@pytest.fixture(scope="session")
def live_server(migrated_database: str) -> Iterator[LiveServer]:
    servers: dict[tuple[int, tuple[tuple[str, str], ...]], ServerProcess] = {}

    def start(workers: int = 1, env: dict[str, str] | None = None) -> str:
        key = (workers, tuple(sorted((env or {}).items())))
        if key not in servers or servers[key].process.poll() is not None:
            servers[key] = ServerProcess(migrated_database, workers, env or {})
            _RUNNING[servers[key].url] = servers[key]
        return servers[key].url

    def stop(url: str) -> None:
        for key, server in list(servers.items()):
            if server.url == url:
                server.stop()
                del servers[key]
                _RUNNING.pop(url, None)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for server in servers.values():
        server.stop()
    _RUNNING.clear()


@pytest.fixture
def admin_key() -> dict[str, str]:
    return make_key("admin")
