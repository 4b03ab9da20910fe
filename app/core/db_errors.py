"""What a database error means for the client: retry it, or which problem to answer.

Both the request path (:mod:`app.api.routing`, :mod:`app.core.errors`) and the worker read a
failure through :func:`classify`, so "the database is not reachable" is said only when it is not.
PostgreSQL errors are told apart by SQLSTATE (psycopg's ``sqlstate``); SQLite's by its messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core.problems import ProblemType

#: SQLSTATEs after which the whole unit of work may simply run again.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


@dataclass(frozen=True, slots=True)
class DatabaseProblem:
    """The problem response a database failure becomes."""

    type_: ProblemType
    detail: str
    sqlstate: str | None
    retry_after: int | None = None

    @property
    def status(self) -> int:
        return self.type_.status

    @property
    def title(self) -> str:
        return self.type_.title


#: What the server said when it refused a *connection*: psycopg reports no ``sqlstate`` for a
#: failed connect, only the server's message, whose SQLSTATE is fixed (PostgreSQL's errcodes).
_CONNECT_SQLSTATES = (
    ("too many connections", "53300"),
    ("too many clients", "53300"),
    ("the database system is starting up", "57P03"),
    ("the database system is shutting down", "57P03"),
    ("the database system is in recovery mode", "57P03"),
)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a (wrapped) driver error, ``None`` when it has none."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        return state
    if type(orig).__module__.startswith("psycopg"):
        message = str(orig).lower()
        for fragment, connect_state in _CONNECT_SQLSTATES:
            if fragment in message:
                return connect_state
    return None


def is_unique_violation(exc: BaseException) -> bool:
    """A unique constraint refused the row (and no other constraint or trigger did)."""
    if not isinstance(exc, IntegrityError):
        return False
    state = sqlstate(exc)
    if state is not None:
        return state == "23505"
    return "unique constraint failed" in str(exc.orig).lower()


def is_transient(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back; run it again."""
    return isinstance(exc, DBAPIError) and sqlstate(exc) in TRANSIENT_SQLSTATES


def _unavailable(
    type_: ProblemType, detail: str, state: str | None, retry_after: int = 5
) -> DatabaseProblem:
    return DatabaseProblem(type_, detail, state, retry_after)


def classify(exc: BaseException) -> DatabaseProblem | None:
    """The problem for a database failure, or ``None`` when ``exc`` is not one."""
    if isinstance(exc, PoolTimeout):
        return _unavailable(
            ProblemType.DATABASE_BUSY,
            "Every database connection of this server is in use; try again shortly.",
            None,
            2,
        )
    if not isinstance(exc, DBAPIError):
        return None
    state = sqlstate(exc)
    message = str(exc.orig).lower()
    if isinstance(exc, IntegrityError):
        return DatabaseProblem(
            ProblemType.CONFLICT,
            "The change conflicts with the stored data (a constraint refused it); nothing was "
            "written.",
            state,
        )
    if state == "40P01" or "deadlock" in message:
        return _unavailable(
            ProblemType.DATABASE_DEADLOCK,
            "The request collided with concurrent ones (deadlock) and was retried without "
            "success; nothing was written. Try again.",
            state,
            1,
        )
    if state == "40001":
        return _unavailable(
            ProblemType.DATABASE_SERIALIZATION_FAILURE,
            "The request collided with concurrent ones and was retried without success; nothing "
            "was written. Try again.",
            state,
            1,
        )
    if (
        state in ("53300", "53400")
        or "too many connections" in message
        or "too many clients" in message
    ):
        return _unavailable(
            ProblemType.DATABASE_OVERLOADED,
            "The database accepts no more connections; try again shortly.",
            state,
        )
    if (
        state in ("55P03", "57014")
        or "lock timeout" in message
        or "statement timeout" in message
        or "database is locked" in message
    ):
        return _unavailable(
            ProblemType.DATABASE_TIMEOUT,
            "The database did not answer in time (a lock or statement timeout); nothing was "
            "written. Try again.",
            state,
            2,
        )
    if state == "42P01" or "no such table" in message:
        return _unavailable(
            ProblemType.DATABASE_NOT_MIGRATED,
            "The database is not migrated: run `kokoma migrate`.",
            state,
            30,
        )
    if (
        state in ("25006", "53100", "58030")
        or "read-only" in message
        or ("disk" in message and "full" in message)
    ):
        return _unavailable(
            ProblemType.DATABASE_UNWRITABLE,
            "The database cannot store the change now (read-only or out of space).",
            state,
            30,
        )
    if (state is None and isinstance(exc, OperationalError | InterfaceError)) or (
        state is not None and state.startswith(("08", "57P"))
    ):
        return _unavailable(
            ProblemType.SERVICE_UNAVAILABLE,
            "The database is not reachable; try again shortly.",
            state,
        )
    return None
