"""The database itself refuses an overbooked manager (the last line under dispatch/slots.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app.core.db import session_scope
from app.models.manager import Manager
from tests.factories import make_roster_manager, seed_reference


def test_open_assignments_cannot_exceed_capacity() -> None:
    seed_reference()
    manager = make_roster_manager(status="active", max_open_assignments=2)
    with session_scope() as session:
        session.execute(update(Manager).where(Manager.id == manager.id).values(open_assignments=2))
    with pytest.raises(IntegrityError), session_scope() as session:
        session.execute(update(Manager).where(Manager.id == manager.id).values(open_assignments=3))
    with pytest.raises(IntegrityError), session_scope() as session:
        session.execute(
            update(Manager).where(Manager.id == manager.id).values(max_open_assignments=1)
        )
    with session_scope(write=False) as session:
        stored = session.get(Manager, manager.id)
        assert stored is not None
        assert (stored.open_assignments, stored.max_open_assignments) == (2, 2)
