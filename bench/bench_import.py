"""Benchmark the incident import: HTTP (uvicorn on 127.0.0.1) and CLI, PostgreSQL and SQLite.

Usage: python bench/bench_import.py [--rows 100000] [--backends postgresql,sqlite]
                                    [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                    [--rss-rows 10000,1000000]

For each backend and mode a fresh, migrated database (reference data seeded, an admin key) gets
the same generated CSV (every column, ~330 bytes a row, 10 % without location, 30 % without
reporter). Reported: rows/s (wall time of the whole import, upload included) and the peak RSS of
the process doing the import (uvicorn server resp. ``kokoma import``, see :class:`PeakRss`). On
PostgreSQL the same file is also loaded with ``COPY … FROM STDIN (FORMAT csv)`` into a typed table
with the CSV's columns and a unique (source, external_id) index — the floor a bulk load can reach
("COPY") — and the rows our import writes for it are loaded with ``COPY`` into a fresh kokoma
database ("COPY schema": the same ten incident indexes, foreign keys and checks, no Python) — the
floor of this schema. Our import writes four rows per incident (incident, competences, timeline,
audit; a fifth, the outbox event, when a webhook subscription listens: "http+listener") and
validates every cell. ``--rss-rows`` imports those sizes over HTTP into PostgreSQL to show that
memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
COLUMNS = (
    "external_id",
    "source",
    "reference",
    "title",
    "description",
    "district",
    "lat",
    "lon",
    "category",
    "escalation_level",
    "required_competences",
    "languages",
    "status",
    "occurred_at",
    "reported_at",
    "organisation_id",
    "reporter_name",
    "reporter_contact",
    "reporter_anonymous",
)
DISTRICTS = [f"district-{n:02d}" for n in range(20)]
COMPETENCES = ["mediation", "anti_discrimination", "youth_work", "right_wing_extremism"]
CATEGORIES = [
    "right_wing_extremism",
    "racism_discrimination",
    "hate_speech",
    "public_space",
    "neighbourhood_dispute",
    "youth_conflict",
    "other",
]


def generate(path: Path, rows: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(COLUMNS)
        for n in range(rows):
            located = rng.random() > 0.1
            reporter = rng.random() > 0.3
            writer.writerow(
                [
                    f"ext-{n:08d}",
                    "hotline",
                    "",
                    f"Vorfall {n} an der Haltestelle",
                    "Beschreibung des Vorfalls mit etwas Text, Ort und Beteiligten. " * 2,
                    rng.choice(DISTRICTS),
                    f"{50.9 + rng.random() / 10:.6f}" if located else "",
                    f"{11.0 + rng.random() / 10:.6f}" if located else "",
                    rng.choice(CATEGORIES),
                    rng.randint(1, 9),
                    "|".join(rng.sample(COMPETENCES, rng.randint(0, 2))),
                    "de" if rng.random() < 0.7 else "de|en",
                    "",
                    f"2026-0{rng.randint(1, 5)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:15:00Z",
                    "2026-06-01T12:00:00Z",
                    "",
                    "Erika Muster" if reporter else "",
                    "erika@example.org" if reporter else "",
                    "false" if reporter else "",
                ]
            )
    return path.stat().st_size


# --- databases ---------------------------------------------------------------------------------


def fresh_database(backend: str, pg_url: str, tmp: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    name = f"kokoma_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return url, drop


PREPARE = """
import sys
from app.core.db import session_scope
from app.core.migrations import upgrade
from app.core.security import SYSTEM_PRINCIPAL
from app.models.reference import Competence, District
from app.models.system import ApiKeyCreate, Role
from app.services.api_keys import ApiKeyService
upgrade("head")
with session_scope() as session:
    for code in sys.argv[1].split(","):
        session.add(District(code=code, name=code, city="Bench"))
    for code in sys.argv[2].split(","):
        session.add(Competence(code=code, name=code))
with session_scope() as session:
    key = ApiKeyService(session).create(ApiKeyCreate(name="bench", role=Role.admin),
                                        SYSTEM_PRINCIPAL).key
if len(sys.argv) > 3 and sys.argv[3] == "subscribe":
    from app.models.webhook import WebhookSubscription
    with session_scope() as session:
        session.add(WebhookSubscription(url="https://93.184.216.34/hooks",
                                        events=["incident.created"], secret="whsec_bench"))
print(key)
"""


def env_for(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "KOKOMA_RATE_LIMIT_PER_MINUTE": "0",
        "KOKOMA_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


def prepare(url: str, *, subscribe: bool = False) -> str:
    out = subprocess.run(
        [
            PYTHON,
            "-c",
            PREPARE,
            ",".join(DISTRICTS),
            ",".join(COMPETENCES),
            "subscribe" if subscribe else "",
        ],
        env=env_for(url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


class PeakRss:
    """The peak resident set of a child process, from ``VmHWM`` in ``/proc/<pid>/status``, read
    every 20 ms while it runs (the last value read is the peak: the mark only grows).

    Not ``ru_maxrss`` from ``wait4``: Linux carries the pre-``exec`` size of the forked image
    into it, so a child of a large benchmark process reported the benchmark's own size.
    """

    def __init__(self, process: subprocess.Popen[Any]) -> None:
        self.kb = 0
        self._path = Path(f"/proc/{process.pid}/status")
        self._process = process
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        try:
            for line in self._path.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.kb = max(self.kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass  # exited meanwhile: the value read before stands

    def _watch(self) -> None:
        while self._process.poll() is None:
            self.sample()
            time.sleep(0.02)

    def mb(self) -> float:
        """Read once more (the caller's process may still be alive), wait for the exit."""
        self.sample()
        self._process.wait()
        self._thread.join()
        return self.kb / 1024


# --- the modes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def via_http(url: str, file: Path, rows: int, *, subscribe: bool = False) -> dict[str, Any]:
    key = prepare(url, subscribe=subscribe)
    port = free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env_for(url),
        cwd=ROOT,
    )
    peak = PeakRss(server)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

        def chunks() -> Any:
            with file.open("rb") as handle:
                while chunk := handle.read(256 * 1024):
                    yield chunk

        started = time.perf_counter()
        response = httpx.post(
            base + "/api/v1/imports/incidents",
            content=chunks(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "text/csv"},
            timeout=httpx.Timeout(60, read=None),
        )
        elapsed = time.perf_counter() - started
        report = response.json()
        assert response.status_code == 200 and report["created"] == rows, report
        peak.sample()  # the server's peak, while it is alive
    finally:
        server.send_signal(signal.SIGINT)
    return {"seconds": elapsed, "rows_per_s": rows / elapsed, "peak_rss_mb": peak.mb()}


def via_cli(url: str, file: Path, rows: int) -> dict[str, Any]:
    prepare(url)
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-m", "app.cli", "import", "incidents", str(file), "--json"],
        env=env_for(url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    peak = PeakRss(process)
    assert process.stdout is not None
    output = process.stdout.read()
    rss_mb = peak.mb()
    elapsed = time.perf_counter() - started
    assert f'"created": {rows}'.encode() in output, output[:500]
    return {"seconds": elapsed, "rows_per_s": rows / elapsed, "peak_rss_mb": rss_mb}


COPY_TABLE = """
CREATE TABLE copy_bench (
  external_id varchar(200) NOT NULL, source varchar(16) NOT NULL, reference varchar(20),
  title varchar(200) NOT NULL, description text NOT NULL, district varchar(64) NOT NULL,
  lat double precision, lon double precision, category varchar(40) NOT NULL,
  escalation_level integer NOT NULL, required_competences text, languages text,
  status varchar(20), occurred_at timestamptz, reported_at timestamptz, organisation_id uuid,
  reporter_name varchar(200), reporter_contact varchar(320), reporter_anonymous boolean,
  UNIQUE (source, external_id))
"""


def timed_copies(
    url: str, loads: list[tuple[str, Callable[[], Iterable[bytes]]]], counted: str, rows: int
) -> dict[str, Any]:
    """Run the ``COPY … FROM STDIN`` statements in one transaction; time them and the commit."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for statement, chunks in loads:
            with conn.cursor().copy(statement) as copy:
                for chunk in chunks():
                    copy.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - started
        count = conn.execute(f"SELECT count(*) FROM {counted}").fetchone()
        assert count is not None and count[0] == rows
    return {"seconds": elapsed, "rows_per_s": rows / elapsed, "peak_rss_mb": None}


def via_copy(url: str, file: Path, rows: int) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        conn.execute(COPY_TABLE)

    def chunks() -> Iterator[bytes]:
        with file.open("rb") as handle:
            while chunk := handle.read(256 * 1024):
                yield chunk

    return timed_copies(
        url,
        [("COPY copy_bench FROM STDIN (FORMAT csv, HEADER true, DELIMITER ';')", chunks)],
        "copy_bench",
        rows,
    )


def via_http_listened(url: str, file: Path, rows: int) -> dict[str, Any]:
    """HTTP with an active ``incident.created`` subscription: every row also gets its outbox
    event (without one an import writes none, see app.services.outbox.listening)."""
    result = via_http(url, file, rows, subscribe=True)
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM outbox_event").fetchone()
    assert count is not None and count[0] == rows, count
    return result


#: The tables an import writes per created incident (outbox only with a listener) and what of
#: them belongs to the import.
KOKOMA_TABLES = (
    ("incident", "TRUE"),
    ("incident_competence", "TRUE"),
    ("incident_event", "TRUE"),
    ("audit_event", "resource = 'incident'"),
)


def via_copy_schema(url: str, file: Path, rows: int) -> dict[str, Any]:
    """The floor of kokoma's own schema: exactly the rows an import of ``file`` writes (taken from
    a scratch import, not timed) loaded with ``COPY`` into a fresh, migrated database — the same
    indexes, foreign keys and checks, no Python. Timed: the loads and the commit."""
    scratch, drop_scratch = fresh_database(
        "postgresql", url.rsplit("/", 1)[0] + "/postgres", file.parent
    )
    dumps: list[tuple[str, str, bytes]] = []
    try:
        via_cli(scratch, file, rows)
        with psycopg.connect(scratch) as conn:
            for table, where in KOKOMA_TABLES:
                columns = ", ".join(
                    f'"{name}"'
                    for (name,) in conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = %s ORDER BY ordinal_position",
                        (table,),
                    )
                )
                data = bytearray()
                with conn.cursor().copy(
                    f"COPY (SELECT {columns} FROM {table} WHERE {where}) TO STDOUT"
                ) as copy:
                    for chunk in copy:
                        data += chunk
                dumps.append((table, columns, bytes(data)))
    finally:
        drop_scratch()
    prepare(url)
    return timed_copies(
        url,
        [
            (f"COPY {table} ({columns}) FROM STDIN", lambda data=data: [data])  # type: ignore[misc]
            for table, columns, data in dumps
        ],
        "incident",
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rss-rows", default="", help="e.g. 10000,1000000 (HTTP, PostgreSQL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kokoma-bench-") as tmp_name:
        tmp = Path(tmp_name)
        file = tmp / "incidents.csv"
        size = generate(file, args.rows)
        print(
            f"{args.rows} rows, {size / 1e6:.1f} MB CSV, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )
        results: list[tuple[str, str, dict[str, Any]]] = []
        for backend in args.backends.split(","):
            modes = [("http", via_http), ("cli", via_cli)]
            if backend == "postgresql":
                modes += [
                    ("http+listener", via_http_listened),
                    ("COPY schema", via_copy_schema),
                    ("COPY", via_copy),
                ]
            for mode, run in modes:
                url, drop = fresh_database(backend, args.pg, tmp)
                try:
                    if mode == "COPY":
                        prepare(url)
                    result = run(url, file, args.rows)
                finally:
                    drop()
                results.append((backend, mode, result))
                rss = result["peak_rss_mb"]
                print(
                    f"{backend:10} {mode:13} {result['seconds']:7.2f} s "
                    f"{result['rows_per_s']:9.0f} rows/s  "
                    f"peak RSS {'-' if rss is None else f'{rss:.0f} MB'}",
                    flush=True,
                )
        print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)
        floors = {m: r for b, m, r in results if b == "postgresql" and m.startswith("COPY")}
        for backend, mode, result in results:
            if backend == "postgresql" and not mode.startswith("COPY"):
                print(
                    f"{backend} {mode}: "
                    + ", ".join(
                        f"{result['rows_per_s'] / floor['rows_per_s']:.2f}x {name}"
                        for name, floor in floors.items()
                    )
                )
        if args.rss_rows:
            for n in (int(x) for x in args.rss_rows.split(",")):
                sized = tmp / f"rss-{n}.csv"
                generate(sized, n, seed=n)
                url, drop = fresh_database("postgresql", args.pg, tmp)
                try:
                    result = via_http(url, sized, n)
                finally:
                    drop()
                    sized.unlink()
                print(
                    f"RSS postgresql http {n:>9} rows: peak {result['peak_rss_mb']:.0f} MB, "
                    f"{result['rows_per_s']:.0f} rows/s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
