"""Single reads of one turn of the event loop (app.core.reads): on PostgreSQL they go to the
server together, in one pipeline on one pooled connection; each request still gets its own rows,
its own error, and a read whose request went away takes nothing down with it. On SQLite each is
its own call on the loop — the same answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from app.core.reads import ReadStatement

NUMBER = ReadStatement("SELECT CAST(:n AS integer) + 1")
#: fails on both databases, whatever the value
MISSING = ReadStatement("SELECT n FROM no_such_table WHERE n = :n")


def run(client: Any, coroutine_function: Any) -> Any:
    return client.portal.call(coroutine_function)


def test_reads_of_one_turn_answer_each_their_own(client: Any, is_postgres: bool) -> None:
    reads = client.app.state.reads
    sent: list[int] = []
    original = reads.all_of

    async def counting(statements: Any) -> Any:
        sent.append(len(statements))
        return await original(statements)

    async def many() -> list[Any]:
        reads.all_of = counting
        try:
            return await asyncio.gather(*(reads.all(NUMBER, {"n": n}) for n in range(25)))
        finally:
            del reads.all_of

    assert run(client, many) == [[(n + 1,)] for n in range(25)]
    # PostgreSQL: one pipeline for the turn; SQLite answers each on the loop, no batch at all
    assert sent == ([25] if is_postgres else [])


def test_a_failing_read_fails_alone(client: Any) -> None:
    reads = client.app.state.reads

    async def mixed() -> list[Any]:
        return await asyncio.gather(
            reads.all(NUMBER, {"n": 1}),
            reads.all(MISSING, {"n": 2}),
            reads.all(NUMBER, {"n": 3}),
            return_exceptions=True,
        )

    first, failed, third = run(client, mixed)
    assert first == [(2,)]
    assert third == [(4,)]
    assert isinstance(failed, DBAPIError)
    assert "no_such_table" in str(failed)


def test_a_read_whose_request_went_away_takes_nothing_down(client: Any, is_postgres: bool) -> None:
    reads = client.app.state.reads

    async def one_cancelled() -> list[Any]:
        gone = asyncio.ensure_future(reads.all(NUMBER, {"n": 1}))
        kept = asyncio.ensure_future(reads.all(NUMBER, {"n": 2}))
        await asyncio.sleep(0)  # both are waiting for their turn's pipeline
        gone.cancel()
        answers = await asyncio.gather(gone, kept, return_exceptions=True)
        later = await reads.all(NUMBER, {"n": 3})  # the reader still works
        return [*answers, later]

    gone, kept, later = run(client, one_cancelled)
    if is_postgres:  # cancelled while it waited in its turn's pipeline
        assert isinstance(gone, asyncio.CancelledError)
    else:  # SQLite answered it on the loop before it could be cancelled
        assert gone == [(2,)]
    assert kept == [(3,)]
    assert later == [(4,)]


@pytest.mark.parametrize("role", ["admin", "coordinator"])
def test_concurrent_gets_over_the_api_answer_as_one_at_a_time(client: Any, role: str) -> None:
    """Many gets at once through the app (one turn of the loop, one pipeline on PostgreSQL):
    byte for byte what each answers alone."""
    import httpx

    from tests.factories import make_incident, make_key, seed_reference

    seed_reference()
    headers = make_key(role)
    ids = [str(make_incident(title=f"Batch {n}").id) for n in range(12)]
    alone = [client.get(f"/api/v1/incidents/{i}", headers=headers) for i in ids]

    async def together() -> list[Any]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            return await asyncio.gather(
                *(api.get(f"/api/v1/incidents/{i}", headers=headers) for i in ids)
            )

    at_once = run(client, together)
    assert [(r.status_code, r.content) for r in at_once] == [
        (r.status_code, r.content) for r in alone
    ]
    assert {r.status_code for r in alone} == {200}
