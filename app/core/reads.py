"""Hot reads on the event loop: no thread hop, no ORM session, no ``BEGIN``.

A single-statement read needs no transaction of its own: it sees one consistent snapshot either
way. The request paths that are read far more often than anything else (an incident by id, the
incident list) therefore run their one statement here instead of in a unit of work
(:func:`app.api.deps.in_unit_of_work`), which costs a worker-thread hop, a session, ``BEGIN``,
ORM result processing and ``COMMIT`` (bench/README.md: ≈ 0.5 ms against ≈ 0.02 ms of query).

- **PostgreSQL**: psycopg's :class:`~psycopg_pool.AsyncConnectionPool` in autocommit mode, every
  statement prepared on first use per connection (``prepare=True``); the loop awaits the socket.
  The single reads (:meth:`PostgresReads.all`) of the requests that get there in the same turn
  of the loop go together, in one pipeline on one connection: one round trip, one pool checkout
  (their system calls cost more than the statements on a virtual machine; bench/README.md).
  ``uuid``, ``timestamptz`` and ``json``/``jsonb`` come back as their text, ready for the JSON
  writer (:mod:`app.repositories.incident_reads`).
- **SQLite**: one read-only ``sqlite3`` connection of the process, in autocommit mode, used on
  the event loop: a short indexed read (≈ 20–200 µs) costs less than the hand-over to a thread,
  and so do several at once (:meth:`Reads.all_of`, a district profile's ≈ 0.5 ms now that it
  keeps its roster: on two reader threads the hand-overs of the GIL cost more than the counting
  they overlapped — bench/README.md). SQLite stores the same three types as text already (UUIDs
  as 32 hex digits).

Statements are written once, with ``:name`` parameters, and run unchanged on both databases
(:class:`ReadStatement` rewrites the placeholders for psycopg). Values are bound through
:meth:`Reads.bind_uuid` / :meth:`Reads.bind_time`, which store them as the ORM engine does.

The readers are opened by the application's lifespan (:func:`open_reads`) and kept on
``app.state.reads``; an app run without its lifespan has none, and its routes take the unit-of-
work path — same answers, slower.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, LiteralString, Protocol, cast

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SAPoolTimeout

from app.core.config import Settings
from app.core.db import engine_generation

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class ReadStatement:
    """One SQL text for both databases: ``:name`` parameters (SQLite's own style), rewritten once
    to ``%(name)s`` for psycopg. ``{agg}`` stands for the string aggregate (``group_concat`` on
    SQLite, ``string_agg`` on PostgreSQL; SQLite has ``string_agg`` only from 3.44)."""

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, sql: str) -> None:
        self.sqlite = sql.replace("{agg}", "group_concat")
        self.postgresql = _NAMED.sub(r"%(\1)s", sql.replace("%", "%%")).replace(
            "{agg}", "string_agg"
        )


class DialectStatement:
    """A statement written once per database where their SQL parts (a table function, an
    aggregate's order): :meth:`on` picks the reader's."""

    __slots__ = ("postgresql", "sqlite")

    def __init__(self, sqlite: str, postgresql: str) -> None:
        self.sqlite = ReadStatement(sqlite)
        self.postgresql = ReadStatement(postgresql)

    def on(self, reads: Reads) -> ReadStatement:
        return self.postgresql if reads.dialect == "postgresql" else self.sqlite


class Reads(Protocol):
    dialect: str

    async def all(
        self, statement: ReadStatement, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]: ...

    async def all_of(
        self, statements: Sequence[tuple[ReadStatement, dict[str, Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """The rows of several independent statements, in order: on PostgreSQL one pooled
        connection and one pipeline (one round trip, one wait on the loop), on SQLite one after
        the other on the loop. Each statement reads its own snapshot, as separate :meth:`all`
        calls do."""
        ...

    async def write_many(self, statement: ReadStatement, rows: Sequence[dict[str, Any]]) -> None:
        """Run ``statement`` once per row in ONE transaction and commit it (group commit)."""
        ...

    def bind_uuid(self, value: uuid.UUID) -> Any: ...

    def bind_time(self, value: datetime) -> Any: ...

    async def close(self) -> None: ...


#: Rows a loop-side SQLite writer commits before its WAL is checkpointed (on a thread).
CHECKPOINT_EVERY_ROWS = 5000


class SQLiteReads:
    """Reads on the loop over one read-only connection (WAL: never blocked by a writer).

    Group-commit writes (:meth:`write_many`) run on the loop too when SQLite's write lock is free
    — a short ``BEGIN IMMEDIATE``, ``executemany``, ``COMMIT`` without fsync (WAL with
    ``synchronous=NORMAL``, as the engine's connections) — and on a worker thread, waiting for
    the lock, when another writer holds it: the loop never waits for a lock. The loop-side
    connection never checkpoints on its own (a checkpoint copies pages and syncs the file): every
    :data:`CHECKPOINT_EVERY_ROWS` rows a passive checkpoint runs on a thread instead.
    """

    dialect = "sqlite"

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._generation = -1
        self._loop_writer: sqlite3.Connection | None = None
        self._thread_writer: sqlite3.Connection | None = None
        self._writer_generation = -1
        self._write_lock = threading.Lock()  # one writer of this process at a time
        self._rows_since_checkpoint = 0
        self._checkpoint: asyncio.Task[None] | None = None

    def _open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            check_same_thread=False,
            isolation_level=None,
            timeout=self._busy_timeout,
            cached_statements=256,
        )
        conn.execute("PRAGMA query_only=ON")
        return conn

    def _connection(self) -> sqlite3.Connection:
        # Reopened when the engine was reset (its connections are dropped then, too) or after
        # a failure: a database file that went away is reported, not read from a stale handle.
        if self._conn is None or self._generation != engine_generation():
            self._discard()
            self._conn, self._generation = self._open_reader(), engine_generation()
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def all(self, statement: ReadStatement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(statement.sqlite, params).fetchall()
        except sqlite3.Error as exc:
            self._discard()
            raise DBAPIError.instance(statement.sqlite, None, exc, sqlite3.Error) from exc

    async def all_of(
        self, statements: Sequence[tuple[ReadStatement, dict[str, Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        conn = self._connection()
        try:
            return [conn.execute(st.sqlite, params).fetchall() for st, params in statements]
        except sqlite3.Error as exc:
            self._discard()
            raise DBAPIError.instance(statements[0][0].sqlite, None, exc, sqlite3.Error) from exc

    # --- writes ---------------------------------------------------------------------------

    def _writer(self, *, on_loop: bool) -> sqlite3.Connection:
        if self._writer_generation != engine_generation():
            self._discard_writers()
            self._writer_generation = engine_generation()
        conn = self._loop_writer if on_loop else self._thread_writer
        if conn is None:
            conn = sqlite3.connect(
                self._path,
                check_same_thread=False,
                isolation_level=None,
                timeout=0 if on_loop else self._busy_timeout,  # the loop never waits
            )
            conn.execute("PRAGMA synchronous=NORMAL")  # as app.core.db's connections
            if on_loop:
                conn.execute("PRAGMA wal_autocheckpoint=0")
                self._loop_writer = conn
            else:
                self._thread_writer = conn
        return conn

    def _discard_writers(self) -> None:
        for conn in (self._loop_writer, self._thread_writer):
            if conn is not None:
                conn.close()
        self._loop_writer = self._thread_writer = None

    @staticmethod
    def _transaction(conn: sqlite3.Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def write_many(self, statement: ReadStatement, rows: Sequence[dict[str, Any]]) -> None:
        try:
            if self._write_lock.acquire(blocking=False):
                try:
                    self._transaction(self._writer(on_loop=True), statement.sqlite, rows)
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                else:
                    self._after_write(len(rows))
                    return
                finally:
                    self._write_lock.release()
            # Locked by another writer: wait for it on a thread, not on the loop.
            await asyncio.to_thread(self._write_waiting, statement.sqlite, rows)
            self._after_write(len(rows))
        except sqlite3.Error as exc:
            self._discard_writers()
            raise DBAPIError.instance(statement.sqlite, None, exc, sqlite3.Error) from exc

    def _write_waiting(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        with self._write_lock:
            self._transaction(self._writer(on_loop=False), sql, rows)

    def _after_write(self, count: int) -> None:
        self._rows_since_checkpoint += count
        if self._rows_since_checkpoint >= CHECKPOINT_EVERY_ROWS and self._checkpoint is None:
            self._rows_since_checkpoint = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_wal())

    async def _checkpoint_wal(self) -> None:
        def run() -> None:
            with self._write_lock:
                self._writer(on_loop=False).execute("PRAGMA wal_checkpoint(PASSIVE)")

        try:
            await asyncio.to_thread(run)
        except sqlite3.Error:  # the next checkpoint, or any engine connection's, catches up
            pass
        finally:
            self._checkpoint = None

    def bind_uuid(self, value: uuid.UUID) -> str:
        return value.hex  # SQLAlchemy's Uuid on SQLite: CHAR(32)

    def bind_time(self, value: datetime) -> str:
        # As the engine stores UTCDateTime on SQLite: naive UTC, always six fractional digits.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        self._discard()
        self._discard_writers()


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    ) or ("locked" in str(exc))


#: A single read waiting for its turn's pipeline (:meth:`PostgresReads.all`)
_Waiting = tuple[ReadStatement, dict[str, Any], "asyncio.Future[list[tuple[Any, ...]]]"]


def _is_outage(exc: BaseException) -> bool:
    """An error of the connection or the pool, which every read of a batch would meet alone
    too (no point in trying each again)."""
    import psycopg

    if isinstance(exc, SAPoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and isinstance(exc.orig, psycopg.OperationalError)


class _ConnectionLost(Exception):
    """The server closed the connection a read ran on; the read may run once more."""


class PostgresReads:
    """Reads over psycopg's async pool: autocommit (no ``BEGIN``), prepared statements."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, size: int, connect_timeout: float) -> None:
        from psycopg_pool import AsyncConnectionPool

        self._conninfo = conninfo
        self._connect_timeout = max(1, int(connect_timeout))
        self._waiting: list[_Waiting] = []  # single reads of this turn of the loop (all)
        self._batches: set[asyncio.Task[None]] = set()  # their pipelines in flight
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            open=False,
            timeout=max(2.0, 2 * connect_timeout),  # waiting for a connection (then 503)
            kwargs={
                "autocommit": True,
                # No JIT: every statement here is a short read, and PostgreSQL compiles one
                # whose *estimated* cost passes jit_above_cost — milliseconds per execution for
                # the month windows' nested loop, whose estimate grows with the table although
                # it reads a few index entries per window.
                "options": "-c TimeZone=UTC -c jit=off",
                "connect_timeout": max(1, int(connect_timeout)),
            },
            configure=_configure_pg,
            name="kokoma-reads",
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def all(self, statement: ReadStatement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One statement — sent together with the other single reads of requests that reached
        this point in the same turn of the event loop: one pipeline on one pooled connection,
        one round trip for all of them (:meth:`_send_waiting`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
        self._waiting.append((statement, params, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._send_waiting)
        return await future

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._read_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _read_batch(self, batch: list[_Waiting]) -> None:
        """The reads of one turn of the loop in one pipeline. Statements in one pipeline share
        PostgreSQL's implicit transaction until its end (each still reads its own snapshot, in
        READ COMMITTED): one that fails would fail the ones after it, so a batch that fails for
        any reason but the connection's runs each read alone — every request gets its own
        answer or its own error, as without the batch."""
        try:
            results = await self.all_of([(statement, params) for statement, params, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or _is_outage(exc):
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            await asyncio.gather(*(self._read_alone(*waiting) for waiting in batch))
            return
        for (_, _, future), rows in zip(batch, results, strict=True):
            if not future.done():  # not cancelled meanwhile (the client went away)
                future.set_result(rows)

    async def _read_alone(
        self,
        statement: ReadStatement,
        params: dict[str, Any],
        future: asyncio.Future[list[tuple[Any, ...]]],
    ) -> None:
        try:
            rows = (await self.all_of([(statement, params)]))[0]
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(rows)

    async def all_of(
        self, statements: Sequence[tuple[ReadStatement, dict[str, Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        import psycopg
        from psycopg_pool import PoolTimeout

        statement = statements[0][0]  # named in an error
        try:
            try:
                return await self._run(statements, lost_is_retried=True)
            except _ConnectionLost:
                # A connection the server closed (restart, failover): the pool drops it; the
                # statements run once more on another one — or report the outage.
                return await self._run(statements, lost_is_retried=False)
        except PoolTimeout as exc:
            # No connection in time: is the server unreachable (→ 503 "service unavailable",
            # as the engine reports it) or is every connection busy (→ 503 "database busy")?
            await self._raise_if_unreachable(statement)
            raise SAPoolTimeout(str(exc)) from exc
        except psycopg.Error as exc:  # → the problem app.core.db_errors gives the error
            raise DBAPIError.instance(statement.postgresql, None, exc, psycopg.Error) from exc

    async def _raise_if_unreachable(self, statement: ReadStatement) -> None:
        import psycopg

        try:
            probe = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=self._connect_timeout, autocommit=True
            )
        except psycopg.OperationalError as exc:
            raise DBAPIError.instance(statement.postgresql, None, exc, psycopg.Error) from exc
        await probe.close()

    async def _run(
        self, statements: Sequence[tuple[ReadStatement, dict[str, Any]]], *, lost_is_retried: bool
    ) -> list[list[tuple[Any, ...]]]:
        import psycopg

        async with self.pool.connection() as conn:
            try:
                if len(statements) == 1:
                    statement, params = statements[0]
                    # the text is a ReadStatement's constant SQL; values are bound, never
                    # formatted in
                    query = cast("LiteralString", statement.postgresql)
                    cursor = await conn.execute(query, params, prepare=True)
                    return [await cursor.fetchall()]
                async with conn.pipeline():
                    cursors = [
                        await conn.execute(
                            cast("LiteralString", statement.postgresql), params, prepare=True
                        )
                        for statement, params in statements
                    ]
                return [await cursor.fetchall() for cursor in cursors]
            except psycopg.OperationalError as exc:
                if lost_is_retried and conn.broken:
                    raise _ConnectionLost from exc
                raise

    async def write_many(self, statement: ReadStatement, rows: Sequence[dict[str, Any]]) -> None:
        """One transaction on a pooled connection: ``executemany`` (one pipelined round trip
        for all rows) and ``COMMIT`` — a single row's statement alone, in autocommit (one round
        trip) — awaited on the loop. A connection the server closed is
        replaced once, as for reads (should the lost one have committed after all, an entry is
        written twice — never none)."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            try:
                await self._write(statement, rows, lost_is_retried=True)
            except _ConnectionLost:
                await self._write(statement, rows, lost_is_retried=False)
        except PoolTimeout as exc:
            await self._raise_if_unreachable(statement)
            raise SAPoolTimeout(str(exc)) from exc
        except psycopg.Error as exc:
            raise DBAPIError.instance(statement.postgresql, None, exc, psycopg.Error) from exc

    async def _write(
        self, statement: ReadStatement, rows: Sequence[dict[str, Any]], *, lost_is_retried: bool
    ) -> None:
        import psycopg

        query = cast("LiteralString", statement.postgresql)
        async with self.pool.connection() as conn:
            try:
                if len(rows) == 1:
                    # one statement on the autocommit connection: its own transaction, committed
                    # when the answer arrives — one round trip instead of BEGIN, it and COMMIT
                    await conn.execute(query, rows[0], prepare=True)
                    return
                async with conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(query, rows)
            except psycopg.OperationalError as exc:
                if lost_is_retried and conn.broken:
                    raise _ConnectionLost from exc
                raise

    def bind_uuid(self, value: uuid.UUID) -> uuid.UUID:
        return value

    def bind_time(self, value: datetime) -> datetime:
        return value

    async def close(self) -> None:
        if self._batches:  # reads in flight finish first
            await asyncio.gather(*self._batches, return_exceptions=True)
        await self.pool.close()


async def _configure_pg(conn: Any) -> None:
    from psycopg.types.string import TextLoader

    for name in ("uuid", "timestamptz", "json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)


def _pg_conninfo(settings: Settings) -> str:
    url = settings.database_url
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url.removeprefix(prefix)
    return url


async def open_reads(settings: Settings) -> Reads:
    """The reader for the configured database (opened by the app's lifespan)."""
    if settings.is_sqlite:
        path = (
            settings.database_url.split("///", 1)[1]
            if "///" in settings.database_url
            else ":memory:"
        )
        return SQLiteReads(path, settings.sqlite_busy_timeout_seconds)
    reads = PostgresReads(
        _pg_conninfo(settings),
        settings.db_read_pool_size,
        settings.db_connect_timeout_seconds,
    )
    await reads.open()
    return reads


# --- values as text, the same for both databases -------------------------------------------------


def uuid_text(value: str | None) -> str | None:
    """``0f8e…`` (SQLite, 32 hex digits) or the canonical form (PostgreSQL) → canonical."""
    if value is None or len(value) != 32:
        return value
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def time_text(value: str | None) -> str | None:
    """A stored UTC timestamp as the API writes it (RFC 3339, ``Z``; microseconds only when not
    zero, six digits — as ``datetime.isoformat``): from SQLite's ``2026-03-01 10:15:00.120000``
    or PostgreSQL's ``2026-03-01 10:15:00.12+00``."""
    if value is None:
        return None
    # SQLite, as SQLAlchemy stores it: the hot case (PostgreSQL's ``…:01.015+00`` is as long)
    if len(value) == 26 and value[19] == "." and value[23] != "+":
        if value.endswith("000000"):
            return f"{value[:10]}T{value[11:19]}Z"
        return f"{value[:10]}T{value[11:]}Z"
    if value.endswith("+00"):
        value = value[:-3]
    date, _, clock = value.partition(" ")
    seconds, _, fraction = clock.partition(".")
    if fraction.strip("0"):
        return f"{date}T{seconds}.{fraction.ljust(6, '0')}Z"
    return f"{date}T{seconds}Z"


def time_value(text: str) -> datetime:
    """The API text of :func:`time_text` as an aware datetime (for keyset cursors)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
