"""Human references from atomic per-year counters (unique also under concurrent creation)."""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

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
            set_={"value": ReferenceCounter.value + stmt.excluded.value},
        ).returning(ReferenceCounter.value)
    ).scalar_one()
    return int(last) - n + 1


class ReferenceBlocks:
    """Blocks of references for a long-running bulk writer (an import) on ``session``.

    On PostgreSQL each block is reserved on a connection of its own in autocommit mode, committed
    at once: the counter's row lock is held for milliseconds instead of for the whole import, so
    incidents created meanwhile through the API do not wait for it. The price: the numbers of an
    import that is rolled back are not reused (the sequence gets a gap). On SQLite writers take
    turns anyway (the import's transaction holds the database's write lock), so blocks are
    reserved in ``session``'s own transaction. :meth:`close` returns the connection.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._apart: Connection | None = None

    def reserve(self, scope: str, year: int, n: int) -> int:
        bind = self.session.get_bind()
        if bind.dialect.name != "postgresql":
            return reserve_block(self.session, scope, year, n)
        if self._apart is None:
            self._apart = bind.connect().execution_options(isolation_level="AUTOCOMMIT")
            # the commit need not wait for the WAL flush (it would flush all the import's WAL
            # written so far: ~4 ms a batch, measured). Safe: the numbers are only ever used by a
            # later transaction, whose own (synchronous) commit flushes this one first.
            self._apart.exec_driver_sql("SET synchronous_commit TO off")
        return _reserve(self._apart, "postgresql", scope, year, n)

    def close(self) -> None:
        if self._apart is not None:
            try:
                self._apart.exec_driver_sql("RESET synchronous_commit")  # back to the pool as it was
            finally:
                self._apart.close()
                self._apart = None


#: The counter scope of incident references.
INCIDENT_SCOPE = "KOK"


def format_incident_reference(year: int, number: int) -> str:
    """An incident's human reference, ``KOK-<year>-<n>`` (n zero-padded to five digits): the
    one place that knows the format (the API and the import both use it)."""
    return f"KOK-{year}-{number:05d}"


def incident_reference(session: Session, year: int) -> str:
    return format_incident_reference(year, next_value(session, INCIDENT_SCOPE, year))


def recommendation_reference(session: Session, year: int) -> str:
    return f"REC-{year}-{next_value(session, 'REC', year):03d}"
