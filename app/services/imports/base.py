"""What every import shares: the kinds and formats, the columns, the report, the per-kind
importer interface and the writes every importer makes (audit entries)."""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from app.core.errors import Conflict
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.base import new_ordered_ids
from app.models.system import AuditEvent
from app.repositories.bulk import copy_uuid, table_writer
from app.services.audit import entry_columns
from app.services.imports.refdata import ReferenceData

MAX_REPORTED_ERRORS = 1000


class ImportKind(StrEnum):
    incidents = "incidents"
    managers = "managers"


class BodyFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"


#: Incident columns, in export order (the CSV export writes exactly these).
INCIDENT_COLUMNS = (
    "external_id",
    "source",
    "reference",
    "title",
    "description",
    "district",
    "lat",
    "lon",
    "category",
    "escalation_level",
    "required_competences",
    "languages",
    "status",
    "occurred_at",
    "reported_at",
    "organisation_id",
    "reporter_name",
    "reporter_contact",
    "reporter_anonymous",
)
INCIDENT_REQUIRED = ("external_id", "title", "district", "category", "escalation_level")

MANAGER_COLUMNS = (
    "email",
    "display_name",
    "phone",
    "organisation_id",
    "status",
    "home_district",
    "districts",
    "languages",
    "max_open_assignments",
    "competences",
    "notify_by_email",
)
MANAGER_REQUIRED = ("email", "display_name", "home_district")


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    rows: int = 0
    dry_run: bool = False
    atomic: bool = True
    committed: bool = False

    def add_error(self, row: int, field_name: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(
                {"row": row, "field": _sendable(field_name), "message": _sendable(message)}
            )


def _sendable(text: str | None) -> str | None:
    """A lone surrogate (an NDJSON field name, say) escaped, so the report can be sent."""
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class FieldError(ValueError):
    pass


def audit_writer(
    session: Session,
    principal: Principal,
    now: datetime,
    action: str,
    resource: str,
    items: list[tuple[Any, list[str]]],
) -> Callable[[], None] | None:
    """The audit entries of a batch's writes: ``items`` are ``(resource id, field names)``."""
    ids = new_ordered_ids(len(items))
    return table_writer(
        session,
        AuditEvent,
        ("id", "resource_id", "fields"),
        [
            (record_id, copy_uuid(resource_id), fields)
            for record_id, (resource_id, fields) in zip(ids, items, strict=True)
        ],
        entry_columns(principal, now, action, resource),
    )


def write_now(*writes: Callable[[], None] | None) -> None:
    for write in writes:
        if write is not None:
            write()


def raise_if_duplicate(exc: Exception) -> None:
    from sqlalchemy.exc import IntegrityError

    try:
        import psycopg

        pg_unique: tuple[type[BaseException], ...] = (psycopg.errors.UniqueViolation,)
    except ImportError:  # pragma: no cover
        pg_unique = ()
    if isinstance(exc, (IntegrityError, *pg_unique)):
        raise Conflict(
            "Another import or request created some of these records at the same time; "
            "run the import again (it is an upsert).",
            type_=ProblemType.CONCURRENT_IMPORT,
        ) from None


class Importer(ABC):
    """The per-kind part: columns, row validation, batch classification and writes."""

    columns: tuple[str, ...]
    required: tuple[str, ...]
    key_field: str

    def __init__(self, session: Session, principal: Principal, refs: ReferenceData) -> None:
        self.session = session
        self.principal = principal
        self.refs = refs
        self.is_pg = session.connection().dialect.name == "postgresql"
        self._done_in: dict[str, Any] = {}

    @abstractmethod
    def validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[Any, Any, list[tuple[str | None, str]]]:
        """``(parsed or None, key or None, errors)``."""

    def plan_for_growing_tables(self) -> None:
        """PostgreSQL: look keys up by index, always. The tables grow during the import faster
        than their statistics (none at all while the import's own rows are uncommitted), and a
        stale estimate turns the foreign-key checks into sequential scans — quadratic time. The
        setting ends with the transaction.

        ``plan_cache_mode = force_custom_plan`` was set here as well; measured, it made every
        foreign-key check (one per written row and key) plan itself again, at a cost growing
        with the table (server CPU for 40,000 incidents 4.2 s → 2.7 s without it). The per-batch
        key lookup of incidents no longer needs it: it is written so that only a per-key index
        probe can serve it (:func:`_pg_key_lookup`).
        """
        if self.is_pg and self._once_per_transaction("growing tables"):
            self.session.execute(text("SET LOCAL enable_seqscan = off"))

    def _once_per_transaction(self, what: str) -> bool:
        """True the first time ``what`` is asked in the session's current transaction (a setting
        or a lock taken then lasts until the transaction ends: no round trip per batch)."""
        transaction = self.session.get_transaction()
        done = self._done_in.get(what)
        if transaction is not None and done is not None and done() is transaction:
            return False
        self._done_in[what] = weakref.ref(transaction) if transaction is not None else None
        return True

    def prepare(self, batch: list[tuple[int, Any]], write: bool) -> Any:
        """Database thread: what :meth:`plan` needs from the database (default: nothing)."""
        return None

    def close(self) -> None:  # noqa: B027 - a hook: most importers hold nothing
        """Release what the import held apart from the session (default: nothing)."""

    def commit(self) -> None:
        """Commit the import's session (an importer may then keep what it reserved apart)."""
        self.session.commit()

    def rollback(self) -> None:
        """Roll the import's session back (an importer may then give back what it reserved)."""
        self.session.rollback()

    def plan(
        self, batch: list[tuple[int, Any]], prepared: Any, write: bool, result: ImportResult
    ) -> list[Callable[[], None]]:
        """Caller's thread: count the batch into ``result`` and return the writes to run on the
        database thread, in order (default: the whole of :meth:`process` there)."""
        return [lambda: self.process(batch, write, result)]

    @abstractmethod
    def process(self, batch: list[tuple[int, Any]], write: bool, result: ImportResult) -> None:
        """Write (or, in a dry run, only count) one batch of validated rows."""
