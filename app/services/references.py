"""Human references from atomic per-year counters (unique also under concurrent creation)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from app.models.system import ReferenceCounter


def next_value(session: Session, scope: str, year: int) -> int:
    """Increment and return the counter ``(scope, year)``; the row lock serialises callers."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(ReferenceCounter)
        .values(scope=scope, year=year, value=0)
        .on_conflict_do_nothing(index_elements=["scope", "year"])
    )
    value = session.execute(
        update(ReferenceCounter)
        .where(ReferenceCounter.scope == scope, ReferenceCounter.year == year)
        .values(value=ReferenceCounter.value + 1)
        .returning(ReferenceCounter.value)
    ).scalar_one()
    return int(value)


def reserve_block(session: Session, scope: str, year: int, n: int) -> int:
    """Reserve ``n`` consecutive values of ``(scope, year)`` atomically; return the first."""
    if n < 1:
        raise ValueError("reserve at least one value")
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(ReferenceCounter)
        .values(scope=scope, year=year, value=0)
        .on_conflict_do_nothing(index_elements=["scope", "year"])
    )
    last = session.execute(
        update(ReferenceCounter)
        .where(ReferenceCounter.scope == scope, ReferenceCounter.year == year)
        .values(value=ReferenceCounter.value + n)
        .returning(ReferenceCounter.value)
    ).scalar_one()
    return int(last) - n + 1


def incident_reference(session: Session, year: int) -> str:
    return f"KOK-{year}-{next_value(session, 'KOK', year):05d}"


def recommendation_reference(session: Session, year: int) -> str:
    return f"REC-{year}-{next_value(session, 'REC', year):03d}"
