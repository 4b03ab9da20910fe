"""Slow import uploads do not stall the server: an import's body is received in full before the
import takes a database session (a connection, a unit-of-work slot, on SQLite the write lock),
and a body that takes longer than ``KOKOMA_IMPORT_BODY_TIMEOUT_SECONDS`` gets a 408 problem.

Kept short: a handful of clients trickling one byte every 0.2 s against a server whose pool
admits only three units of work at once (PostgreSQL; SQLite serialises writers anyway), so the
same load stalled the server before the body was spooled first. The measured figure with 40
clients at one byte every 0.5 s is in the import notes of bench/README.md.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx

from tests.factories import incident_body, seed_reference
from tests.live.conftest import LiveServer

SLOW_CLIENTS = 6
TRICKLE_SECONDS = 0.2
BODY_TIMEOUT = 4.0
HEADER = b"external_id;title;district;category;escalation_level\r\n"


def slow_upload(url: str, auth: str, statuses: list[bytes], started: threading.Event) -> None:
    """POST an import whose header row arrives at once and the rest one byte at a time."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/imports/incidents HTTP/1.1\r\n"
            + f"Host: {parts.netloc}\r\nAuthorization: {auth}\r\n".encode()
            + b"Content-Type: text/csv\r\nContent-Length: 100000\r\n\r\n"
            + HEADER
        )
        started.set()
        deadline = time.monotonic() + BODY_TIMEOUT + 15
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], TRICKLE_SECONDS)
            if readable:
                statuses.append(sock.recv(4096).split(b"\r\n", 1)[0])
                return
            try:
                sock.sendall(b"x")
            except OSError:  # the server answered and closed: read the answer
                continue
        statuses.append(b"no answer")


def test_slow_uploads_do_not_stall_other_requests(
    live_server: LiveServer, admin_key: dict[str, str], is_postgres: bool
) -> None:
    seed_reference()
    env = {"KOKOMA_IMPORT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)}
    if is_postgres:
        env.update(KOKOMA_DB_POOL_SIZE="3", KOKOMA_DB_MAX_OVERFLOW="0")
    url = live_server(env=env)
    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        for _ in range(2):  # warm up: the first requests of a process load and compile a lot
            assert client.post("/api/v1/incidents", json=incident_body()).status_code == 201
            assert client.get("/api/v1/incidents", params={"limit": 5}).status_code == 200
    statuses: list[bytes] = []
    uploads = []
    for _ in range(SLOW_CLIENTS):
        started = threading.Event()
        upload = threading.Thread(
            target=slow_upload, args=(url, admin_key["Authorization"], statuses, started)
        )
        upload.start()
        assert started.wait(10)
        uploads.append(upload)
    time.sleep(0.5)  # every upload is under way: the header row is in, the body trickles

    latencies = []
    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        until = time.monotonic() + BODY_TIMEOUT - 1.5
        while time.monotonic() < until:
            begin = time.monotonic()
            created = client.post("/api/v1/incidents", json=incident_body())
            assert created.status_code == 201, created.text
            middle = time.monotonic()
            listed = client.get("/api/v1/incidents", params={"limit": 5})
            assert listed.status_code == 200, listed.text
            latencies += [middle - begin, time.monotonic() - middle]
        for upload in uploads:
            upload.join(BODY_TIMEOUT + 20)
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        assert len(latencies) >= 5 and p99 < 1.0, latencies
        assert statuses == [b"HTTP/1.1 408 Request Timeout"] * SLOW_CLIENTS, statuses
        # the server is fine afterwards: an import that arrives in time is imported
        body = HEADER + b"slow-1;After the slow ones;alpha;hate_speech;2\r\n"
        report = client.post(
            "/api/v1/imports/incidents", content=body, headers={"Content-Type": "text/csv"}
        )
        assert (report.status_code, report.json()["created"]) == (200, 1), report.text
