"""Human references from atomic per-year counters (unique also under concurrent creation)."""

from __future__ import annotations

import re

from sqlalchemy import Connection, func, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from app.models.base import table_of
from app.models.system import ReferenceCounter


def next_value(session: Session, scope: str, year: int) -> int:
    """Increment and return the counter ``(scope, year)``; the row lock serialises callers."""
    return reserve_block(session, scope, year, 1)


def reserve_block(session: Session, scope: str, year: int, n: int) -> int:
    """Reserve ``n`` consecutive values of ``(scope, year)`` atomically; return the first."""
    return _reserve(session, session.get_bind().dialect.name, scope, year, n)


def _reserve(on: Session | Connection, dialect: str, scope: str, year: int, n: int) -> int:
    """One statement (an upsert that adds ``n``): the row lock it takes serialises callers."""
    if n < 1:
        raise ValueError("reserve at least one value")
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(ReferenceCounter).values(scope=scope, year=year, value=n)
    last = on.execute(
        stmt.on_conflict_do_update(
            index_elements=["scope", "year"],
            set_={"value": col(ReferenceCounter.value) + stmt.excluded.value},
        ).returning(col(ReferenceCounter.value))
    ).scalar_one()
    return int(last) - n + 1


class ReferenceBlocks:
    """Blocks of references for a long-running bulk writer (an import) on ``session``.

    On PostgreSQL each block is reserved on a connection of its own in autocommit mode, committed
    at once: the counter's row lock is held for milliseconds instead of for the whole import, so
    incidents created meanwhile through the API do not wait for it. When the import's transaction
    is rolled back instead (an atomic import with a row error, a failure), :meth:`give_back`
    returns the blocks it no longer needs: each, newest first, only while it is still the last
    one handed out (``value`` is still its end) — a number somebody else took since is never
    given back, so then the numbers before it stay unused (a gap, the one price of not holding
    the lock). :meth:`keep` marks the blocks used once the transaction committed. On SQLite
    writers take turns anyway (the import's transaction holds the database's write lock), so
    blocks are reserved in ``session``'s own transaction and a rollback takes them back.
    :meth:`close` returns the connection.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._apart: Connection | None = None
        #: (scope, year, value before, value after) of each uncommitted reservation or raise
        self._held: list[tuple[str, int, int, int]] = []

    def reserve(self, scope: str, year: int, n: int) -> int:
        bind = self.session.get_bind()
        if bind.dialect.name != "postgresql":
            return reserve_block(self.session, scope, year, n)
        first = _reserve(self._connection(), "postgresql", scope, year, n)
        self._held.append((scope, year, first - 1, first + n - 1))
        return first

    def raise_to(self, scope: str, year: int, n: int) -> None:
        """Numbers up to ``n`` are taken (an import restores references it was given); like a
        reservation, on PostgreSQL at once and apart, and given back like one."""
        bind = self.session.get_bind()
        if bind.dialect.name != "postgresql":
            raise_counter(self.session, bind.dialect.name, scope, year, n)
            return
        before, after = (
            self._connection()
            .execute(
                _RAISE_RETURNING_BEFORE,
                {
                    "scope": scope,
                    "year": year,
                    "n": n,
                },
            )
            .one()
        )
        if before is None or after > before:
            self._held.append((scope, year, before or 0, after))

    def _connection(self) -> Connection:
        if self._apart is None:
            bind = self.session.get_bind()
            self._apart = bind.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # the commit need not wait for the WAL flush (it would flush all the import's WAL
            # written so far: ~4 ms a batch, measured). Safe: the numbers are only ever used by a
            # later transaction, whose own (synchronous) commit flushes this one first.
            self._apart.exec_driver_sql("SET synchronous_commit TO off")
        return self._apart

    def keep(self) -> None:
        """The session committed: the blocks reserved so far are used."""
        self._held.clear()

    def give_back(self) -> int:
        """The session rolled back: return what can be returned; how many numbers were."""
        returned = 0
        if self._apart is None:
            self._held.clear()
            return returned
        table = table_of(ReferenceCounter)
        while self._held:
            scope, year, before, after = self._held.pop()
            done = self._apart.execute(
                update(table)
                .where(table.c.scope == scope, table.c.year == year, table.c.value == after)
                .values(value=before)
            ).rowcount
            if not done:  # taken after this block: it and the blocks before it stay used
                self._held.clear()
                break
            returned += after - before
        return returned

    def close(self) -> None:
        self._held.clear()
        if self._apart is not None:
            try:
                self._apart.exec_driver_sql(
                    "RESET synchronous_commit"
                )  # back to the pool as it was
            finally:
                self._apart.close()
                self._apart = None


#: The counter scope of incident references.
INCIDENT_SCOPE = "KOK"


def format_incident_reference(year: int, number: int) -> str:
    """An incident's human reference, ``KOK-<year>-<n>`` (n zero-padded to five digits): the
    one place that knows the format (the API and the import both use it)."""
    return f"KOK-{year}-{number:05d}"


_INCIDENT_REFERENCE = re.compile(r"KOK-(\d{4})-(\d{5,9})")


def parse_incident_reference(text: str) -> tuple[int, int] | None:
    """``(year, n)`` of an incident reference in :func:`format_incident_reference`'s format."""
    match = _INCIDENT_REFERENCE.fullmatch(text)
    if match is None or format_incident_reference(int(match[1]), int(match[2])) != text:
        return None  # e.g. a number with a superfluous leading zero
    return int(match[1]), int(match[2])


def raise_counter(on: Session | Connection, dialect: str, scope: str, year: int, n: int) -> None:
    """Make sure ``(scope, year)`` hands out only values above ``n`` from now on."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(ReferenceCounter).values(scope=scope, year=year, value=n)
    greatest = func.greatest if dialect == "postgresql" else func.max
    on.execute(
        stmt.on_conflict_do_update(
            index_elements=["scope", "year"],
            set_={"value": greatest(ReferenceCounter.value, stmt.excluded.value)},
        )
    )


#: :func:`raise_counter` on PostgreSQL, also returning the value before (``NULL``: no row yet); the
#: row lock of the CTE makes the two values one step (READ COMMITTED re-reads a changed row).
_RAISE_RETURNING_BEFORE = text("""
    WITH old AS (
        SELECT value FROM reference_counter WHERE scope = :scope AND year = :year FOR UPDATE
    )
    INSERT INTO reference_counter (scope, year, value) VALUES (:scope, :year, :n)
    ON CONFLICT (scope, year) DO UPDATE SET value = GREATEST(reference_counter.value, EXCLUDED.value)
    RETURNING (SELECT value FROM old) AS before, value AS after
""")


def incident_reference(session: Session, year: int) -> str:
    return format_incident_reference(year, next_value(session, INCIDENT_SCOPE, year))


def recommendation_reference(session: Session, year: int) -> str:
    return f"REC-{year}-{next_value(session, 'REC', year):03d}"
