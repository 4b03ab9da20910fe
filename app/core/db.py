"""Engine and sessions.

The request dependency :func:`get_session` commits on success and rolls back on error; services and
repositories only ``flush()``. The worker and the CLI use :func:`session_scope`.

SQLite runs in WAL mode with foreign keys on. Write transactions start with ``BEGIN IMMEDIATE`` so
that concurrent writers queue on the database lock (``busy_timeout``) instead of failing with
"database is locked" when a read transaction tries to upgrade: SQLite thereby serialises writes,
which is what the capacity guarantees of dispatch rely on there. PostgreSQL runs READ COMMITTED and
the services take row locks (``SELECT … FOR UPDATE``) where an invariant spans rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import Connection, CursorResult, Result
from sqlmodel import Session, create_engine

from app.core.config import Settings, get_settings

WRITE_OPTION = "kokoma_write"


def build_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if settings.is_sqlite:
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": settings.sqlite_busy_timeout_seconds,
                "isolation_level": None,  # we emit BEGIN ourselves (see _sqlite_begin)
            },
            # Keep every connection the request bound (15 units of work) admits: a connection
            # closed on check-in is reopened with its PRAGMAs on the next request (churn).
            pool_size=20,
            max_overflow=10,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A database that is down or unreachable fails a request fast (→ 503), never hangs it.
        connect_args={"connect_timeout": settings.db_connect_timeout_seconds},
    )


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_engine: Engine | None = None


def get_engine() -> Engine:
    """The process-wide engine for the configured database (created on first use)."""
    global _engine
    if _engine is None:
        _engine = build_engine(get_settings())
    return _engine


#: Counts :func:`reset_engine` calls: the event-loop reader (app.core.reads) reopens its SQLite
#: connection when it changed, as the engine's pooled connections are dropped.
_generation = [0]


def engine_generation() -> int:
    return _generation[0]


def reset_engine() -> None:
    """Dispose the engine (tests switch databases; forked workers start afresh)."""
    global _engine
    _generation[0] += 1
    if _engine is not None:
        _engine.dispose()
    _engine = None


def connection_budget_warning(engine: Engine, settings: Settings, workers: int) -> str | None:
    """A warning when ``workers`` processes may open more connections than PostgreSQL admits.

    Each process keeps up to ``KOKOMA_DB_POOL_SIZE + KOKOMA_DB_MAX_OVERFLOW`` connections; the
    server admits ``max_connections`` less those reserved for superusers (and, on PostgreSQL
    16+, ``reserved_connections``). ``None`` when it fits, or for SQLite (no connection limit).
    """
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        settings_rows = dict(
            conn.exec_driver_sql(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
            ).all()
        )
    maximum = int(settings_rows["max_connections"])
    reserved = sum(
        int(settings_rows.get(name, 0))
        for name in ("superuser_reserved_connections", "reserved_connections")
    )
    per_process = settings.db_pool_size + settings.db_max_overflow
    needed = workers * per_process
    if needed <= maximum - reserved:
        return None
    return (
        f"{workers} worker process(es) × (KOKOMA_DB_POOL_SIZE {settings.db_pool_size} + "
        f"KOKOMA_DB_MAX_OVERFLOW {settings.db_max_overflow}) = {needed} connections exceed "
        f"the database's max_connections {maximum} less {reserved} reserved: under load "
        f"requests will fail with 503. Lower the pool per process or put PgBouncer in front "
        f"(README: Connection pool sizing)."
    )


def new_session(*, write: bool) -> Session:
    engine = get_engine()
    bind = engine.execution_options(**{WRITE_OPTION: True}) if write else engine
    return Session(bind, expire_on_commit=False)


@contextmanager
def session_scope(*, write: bool = True) -> Iterator[Session]:
    """A unit of work outside HTTP (worker, CLI, middleware): commit on success."""
    session = new_session(write=write)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def affected_rows(result: Result[Any]) -> int:
    """Rows an ``UPDATE`` or ``DELETE`` matched (``Session.execute`` is typed as returning a
    plain ``Result``; for these statements it is a ``CursorResult``, which counts them)."""
    if not isinstance(result, CursorResult):
        raise TypeError("affected_rows() needs the result of an UPDATE or DELETE")
    return int(result.rowcount or 0)
