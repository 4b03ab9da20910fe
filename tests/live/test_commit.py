"""Acknowledged means committed, seen from a socket.

* An immediate repeat of an answered ``Idempotency-Key`` request meets the replay, never
  "still being processed" (the middleware sends the response only once its record is complete).
* A write the database refuses when it commits (a deferred constraint trigger, installed by the
  test in the run's own database) is answered with a problem, never a 2xx, and leaves nothing.
  SQLite has no deferred triggers: there the trigger refuses the row when it is written, which
  proves the same answer for a refusal inside the unit of work.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from app.core.db import get_engine
from tests.factories import incident_body, seed_reference, table_counts
from tests.live.conftest import WORKER_COUNTS, LiveServer

API = "/api/v1"
PROBLEM = "application/problem+json"
REFUSED = "refused when committed"
REPEATS = 20

_PG_TRIGGER = [
    """CREATE OR REPLACE FUNCTION kokoma_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.title = 'refused when committed' THEN
            RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE CONSTRAINT TRIGGER kokoma_test_refuse AFTER INSERT OR UPDATE ON incident
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kokoma_test_refuse()""",
]
_PG_DROP = [
    "DROP TRIGGER IF EXISTS kokoma_test_refuse ON incident",
    "DROP FUNCTION IF EXISTS kokoma_test_refuse()",
]
_SQLITE_TRIGGER = [
    f"""CREATE TRIGGER kokoma_test_refuse_insert BEFORE INSERT ON incident
    WHEN NEW.title = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'refused'); END""",
    f"""CREATE TRIGGER kokoma_test_refuse_update BEFORE UPDATE ON incident
    WHEN NEW.title = '{REFUSED}' BEGIN SELECT RAISE(ABORT, 'refused'); END""",
]
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS kokoma_test_refuse_insert",
    "DROP TRIGGER IF EXISTS kokoma_test_refuse_update",
]


@pytest.fixture
def refusing_trigger(is_postgres: bool) -> Iterator[None]:
    install, drop = (_PG_TRIGGER, _PG_DROP) if is_postgres else (_SQLITE_TRIGGER, _SQLITE_DROP)
    with get_engine().begin() as conn:
        for statement in install:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with get_engine().begin() as conn:
            for statement in drop:
                conn.execute(text(statement))


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_immediate_idempotent_repeat_is_replayed(
    live_server: LiveServer, admin_key: dict[str, str], workers: int
) -> None:
    seed_reference()
    url = live_server(workers=workers)

    def create_twice(n: int) -> list[str]:
        failures = []
        with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
            for i in range(REPEATS // 4):
                headers = {"Idempotency-Key": f"repeat-{workers}-{n}-{i}"}
                body = incident_body(title=f"Repeat {n}-{i}")
                first = client.post(f"{API}/incidents", json=body, headers=headers)
                again = client.post(f"{API}/incidents", json=body, headers=headers)
                if (
                    first.status_code != 201
                    or again.status_code != 201
                    or again.headers.get("Idempotent-Replayed") != "true"
                    or again.json()["id"] != first.json()["id"]
                ):
                    failures.append(f"{first.status_code} then {again.status_code} {again.text}")
        return failures

    with ThreadPoolExecutor(4) as pool:
        failures = [f for found in pool.map(create_twice, range(4)) for f in found]
    assert failures == [], f"{len(failures)} of {REPEATS} immediate repeats: {failures[:3]}"
    assert table_counts()["incident"] == REPEATS


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_refused_commit_is_never_acknowledged(
    live_server: LiveServer, admin_key: dict[str, str], workers: int, refusing_trigger: None
) -> None:
    seed_reference()
    url = live_server(workers=workers)
    with httpx.Client(base_url=url, headers=admin_key, timeout=30) as client:
        kept = client.post(f"{API}/incidents", json=incident_body(title="Kept"))
        assert kept.status_code == 201, kept.text
        before = table_counts()

        created = client.post(f"{API}/incidents", json=incident_body(title=REFUSED))
        assert created.status_code == 409, created.text
        assert created.headers["content-type"] == PROBLEM
        assert created.json()["type"] == "/problems/conflict"

        replayable = client.post(
            f"{API}/incidents",
            json=incident_body(title=REFUSED),
            headers={"Idempotency-Key": f"refused-{workers}"},
        )
        assert replayable.status_code == 409, replayable.text

        updated = client.patch(f"{API}/incidents/{kept.json()['id']}", json={"title": REFUSED})
        assert updated.status_code == 409, updated.text
        assert updated.json()["type"] == "/problems/conflict"

        after = table_counts()
        after.pop("idempotency_record")  # the refused request's 409 is kept for its replay
        before.pop("idempotency_record")
        assert after == before
        read = client.get(f"{API}/incidents/{kept.json()['id']}")
        assert read.json()["title"] == "Kept"
        assert read.json()["version"] == kept.json()["version"]
