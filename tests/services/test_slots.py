"""A batch's manager slots (app.services.dispatch.slots.reserve_slots): all or nothing per
manager, whose were lost named, never an overbooked manager — also with two batches at once."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update

from app.core.db import session_scope
from app.models.manager import Manager
from app.services.dispatch.slots import reserve_slots
from tests.factories import make_manager, seed_reference

NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


def _manager(max_open: int, open_now: int) -> uuid.UUID:
    manager_id = make_manager(max_open_assignments=max_open)
    with session_scope() as session:
        session.execute(
            update(Manager).where(Manager.id == manager_id).values(open_assignments=open_now)
        )
    return manager_id


def _counters(ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, datetime | None]]:
    with session_scope(write=False) as session:
        rows = session.execute(
            select(Manager.id, Manager.open_assignments, Manager.last_assigned_at).where(
                Manager.id.in_(ids)  # type: ignore[attr-defined]
            )
        )
        return {row.id: (row.open_assignments, row.last_assigned_at) for row in rows}


class TestReserveSlots:
    def test_takes_what_fits_and_names_the_rest(self) -> None:
        seed_reference()
        fits = _manager(max_open=2, open_now=1)
        full = _manager(max_open=1, open_now=1)
        two_free = _manager(max_open=3, open_now=0)
        one_short = _manager(max_open=2, open_now=1)  # wants two, has one free: gets none
        with session_scope() as session:
            lost = reserve_slots(session, {fits: 1, full: 1, two_free: 2, one_short: 2}, NOW)
        assert lost == {full, one_short}
        assert _counters([fits, full, two_free, one_short]) == {
            fits: (2, NOW),
            full: (1, None),
            two_free: (2, NOW),
            one_short: (1, None),
        }

    def test_nothing_asked_nothing_taken(self) -> None:
        with session_scope() as session:
            assert reserve_slots(session, {}, NOW) == set()

    def test_two_batches_at_once_never_overbook(self) -> None:
        """Two batches want the same last slots at once, asking in opposite orders (each takes
        its locks in id order): one gets them all, the other none, nobody is overbooked and
        neither deadlocks."""
        seed_reference()
        managers = [_manager(max_open=1, open_now=0) for _ in range(4)]
        start = threading.Barrier(2)
        results: dict[str, set[uuid.UUID]] = {}
        errors: list[BaseException] = []

        def batch(name: str, order: list[uuid.UUID]) -> None:
            try:
                start.wait(10)
                with session_scope() as session:
                    results[name] = reserve_slots(session, dict.fromkeys(order, 1), NOW)
            except BaseException as error:  # reported by the test thread below
                errors.append(error)

        threads = [
            threading.Thread(target=batch, args=("first", managers)),
            threading.Thread(target=batch, args=("second", managers[::-1])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert sorted(len(lost) for lost in results.values()) == [0, 4]
        assert {open_now for open_now, _ in _counters(managers).values()} == {1}
