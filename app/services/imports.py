"""Bulk imports of incidents and managers: streamed, validated per row, written in batches.

The body is read as a stream of byte chunks (:mod:`app.services.csv_io`), one record at a time;
valid rows are collected into batches of ``KOKOMA_IMPORT_BATCH_ROWS`` (2,000). Per batch there is
one SELECT for the existing keys (``(source, external_id)`` / ``email``) and one for their
competences, then bulk writes: on PostgreSQL ``COPY … FROM STDIN`` into every table (incident,
competences, timeline, outbox, audit), elsewhere one ``executemany`` INSERT per table; changed rows
are updated with one ``executemany`` UPDATE. The database work runs on a thread of its own while
the next batches are parsed (:class:`_Pipeline`). Memory is constant except for one 64-bit hash
per key, kept to refuse a key that appears twice in the same file (≈ 60 bytes per row).

Transactions: imports are the one place a service commits, because batching is the point.
``atomic=true`` (default): everything is one transaction; at the first row error it is rolled
back and the rest of the file is only validated (so the response still lists every error) —
nothing is written and ``created``/``updated`` are 0 (a dry run tells what the rows would do). ``atomic=false``: each batch is committed,
rows with errors are skipped. ``dry_run``: validate and classify, write nothing.

Semantics of a row (documented in the README):

* incidents are keyed by ``(source, external_id)``; ``external_id`` is required, ``source``
  defaults to ``import``; ``reference`` is ignored (the importing database allocates references,
  in file order, in blocks — see :class:`app.services.references.ReferenceBlocks`); ``status`` is used when a row *creates* an incident (legacy data, e.g.
  ``closed``; default ``reported``; ``dispatched``/``in_progress`` need assignments and are
  refused) and ignored on update — the lifecycle belongs to ``POST …/status``;
* managers are keyed by ``email`` (case-insensitive); ``status`` likewise applies on creation only
  (``in_training`` or ``active``, as for ``POST /managers``);
* a column absent from the file leaves the stored value alone on update; a present but empty cell
  means "none" (e.g. no location, no reporter);
* every created incident gets its reference, a ``created`` timeline event, an audit entry and —
  when an active webhook subscription takes ``incident.created`` (:func:`app.services.outbox.
  listening`) — an ``incident.created`` outbox event with the payload the API would emit; an
  updated one gets an ``updated`` event and an audit entry naming the fields (never values).
"""

from __future__ import annotations

import contextvars
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticUndefined
from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    String,
    Table,
    Uuid,
    bindparam,
    delete,
    func,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, SQLModel

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.errors import Conflict, Unprocessable
from app.core.problems import ProblemType
from app.core.security import Principal
from app.models.base import UTCDateTime, new_ordered_ids
from app.models.incident import (
    Incident,
    IncidentCategory,
    IncidentCompetence,
    IncidentEvent,
    IncidentSource,
    IncidentStatus,
)
from app.models.languages import validate_language_codes
from app.models.manager import Manager, ManagerCompetence, ManagerDistrict, ManagerStatus
from app.models.outbox import OutboxEvent
from app.models.reference import Competence, District, Organisation
from app.models.system import AuditEvent, AuditKind
from app.services.audit import principal_columns
from app.services.csv_io import (
    LineSplitter,
    Record,
    UnreadableBody,
    read_csv,
    read_ndjson,
    unescape_cell,
)
from app.services.outbox import listening as outbox_listening
from app.services.references import ReferenceBlocks
from app.services.timeline import actor_columns

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
REPORTER_COLUMNS = ("reporter_name", "reporter_contact", "reporter_anonymous")

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
            self.errors.append({"row": row, "field": field_name, "message": message})


class FieldError(ValueError):
    pass


# --- cell parsers (CSV text or NDJSON values) ---------------------------------------------------


def _text(raw: Any, is_csv: bool, max_len: int, *, strip: bool = True) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise FieldError("must be text")
    value = unescape_cell(raw) if is_csv else raw
    if strip:
        value = value.strip()
    if value == "":
        return None
    if len(value) > max_len:
        raise FieldError(f"is longer than {max_len} characters")
    return value


def _code(raw: Any, is_csv: bool) -> str | None:
    value = _text(raw, is_csv, 64)
    return value


def _int(raw: Any, is_csv: bool, low: int, high: int) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise FieldError("must be a whole number")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw.strip())
        except ValueError:
            raise FieldError("must be a whole number") from None
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    else:
        raise FieldError("must be a whole number")
    if not low <= value <= high:
        raise FieldError(f"must be between {low} and {high}")
    return value


def _float(raw: Any, is_csv: bool, low: float, high: float) -> float | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise FieldError("must be a number")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if "," in text and "." not in text:
            text = text.replace(",", ".")  # German spreadsheets: 50,9787
        try:
            value = float(text)
        except ValueError:
            raise FieldError("must be a number") from None
    else:
        raise FieldError("must be a number")
    if not low <= value <= high:  # also refuses nan
        raise FieldError(f"must be between {low:g} and {high:g}")
    return value


_TRUE = frozenset({"true", "1", "yes", "ja", "wahr"})
_FALSE = frozenset({"false", "0", "no", "nein", "falsch"})


def _bool(raw: Any, is_csv: bool) -> bool | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FieldError("must be true or false")


def _timestamp(raw: Any, is_csv: bool) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise FieldError("must be an RFC 3339 timestamp")
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise FieldError("must be an RFC 3339 timestamp, e.g. 2026-05-01T12:00:00Z") from None
    if value.tzinfo is None:
        raise FieldError("needs a time zone offset, e.g. 2026-05-01T12:00:00Z")
    return value.astimezone(UTC)


def _list(raw: Any, is_csv: bool, max_items: int) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split("|")]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        items = [item.strip() for item in raw]
    else:
        raise FieldError("must be a list of codes ('a|b' or a JSON array of strings)")
    items = [item for item in items if item]
    if len(items) > max_items:
        raise FieldError(f"has more than {max_items} entries")
    return items


def _uuid(raw: Any, is_csv: bool) -> uuid.UUID | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise FieldError("must be a UUID")
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise FieldError("must be a UUID") from None


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public_incident_fields(names: Iterable[str]) -> list[str]:
    """Column names as the API names them (``reporter``, ``location``), for audit and timeline."""
    fields = set()
    for name in names:
        if name in REPORTER_COLUMNS or name == "has_reporter":
            fields.add("reporter")
        elif name in ("lat", "lon"):
            fields.add("location")
        elif name != "reference":
            fields.add(name)
    return sorted(fields)


# --- reference data, loaded once per import -----------------------------------------------------


@dataclass
class ReferenceData:
    districts: set[str]
    competences: set[str]
    organisations: set[uuid.UUID]

    @classmethod
    def load(cls, session: Session) -> ReferenceData:
        return cls(
            districts=set(session.scalars(select(District.code))),
            competences=set(session.scalars(select(Competence.code))),
            organisations=set(session.scalars(select(Organisation.id))),
        )


# --- bulk writing ---------------------------------------------------------------------------------


def bulk_insert(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table in one go (see :func:`bulk_writer`)."""
    write = bulk_writer(session, model, rows)
    if write is not None:
        write()


def bulk_writer(
    session: Session, model: type[SQLModel], rows: list[dict[str, Any]]
) -> Callable[[], None] | None:
    """:func:`table_writer` for rows given as dicts (every row with the first row's keys)."""
    if not rows:
        return None
    names = list(rows[0])
    return table_writer(session, model, names, [tuple(row[n] for n in names) for row in rows])


def table_writer(
    session: Session,
    model: type[SQLModel],
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    constants: dict[str, Any] | None = None,
) -> Callable[[], None] | None:
    """Render ``rows`` (values in the order of ``columns``) for ``model``'s table now; return the
    call that writes them in one go: ``COPY … FROM STDIN`` on PostgreSQL, else one
    ``executemany`` of the driver with the columns' own bind processors (no per-row ORM or
    statement work). ``None`` when there is nothing to write.

    ``constants`` are columns with one value for the whole batch (a timestamp, the actor): each
    is rendered once. Columns named nowhere get the model's field default (a column added to the
    model later does not break the imports). Rendering and writing are apart so that an import
    renders the next batch in Python while the database writes this one (:class:`_Pipeline`).
    """
    if not rows:
        return None
    table: Table = model.__table__  # type: ignore[attr-defined]
    columns, constants = list(columns), dict(constants or {})
    factories = []
    for column in table.columns:
        if column.name in constants or column.name in columns:
            continue
        field_info = model.model_fields.get(column.name)
        if field_info is not None and field_info.default_factory is not None:
            factories.append(field_info.default_factory)  # e.g. an id: one per row
            columns.append(column.name)
        else:
            constants[column.name] = _field_default(model, column.name)()
    if factories:
        rows = [(*row, *(make() for make in factories)) for row in rows]  # type: ignore[call-arg]
    by_name = {column.name: column for column in table.columns}
    varying = [by_name[name] for name in columns]
    fixed = [by_name[name] for name in constants]
    quoted = ", ".join(f'"{column.name}"' for column in (*varying, *fixed))
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        def processor(column: Any) -> Callable[[Any], Any] | None:
            if _is_json(column.type):
                return _to_json_text
            process = column.type._cached_bind_processor(dialect)
            return _memoised(process) if isinstance(column.type, UTCDateTime) else process

        processors = [processor(column) for column in varying]
        fixed_params = tuple(
            process(constants[c.name]) if (process := processor(c)) is not None
            else constants[c.name]
            for c in fixed
        )
        params = [
            (*(proc(value) if proc is not None else value
               for proc, value in zip(processors, row, strict=True)), *fixed_params)
            for row in rows
        ]
        placeholders = ", ".join("?" for _ in range(len(varying) + len(fixed)))
        insert_sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({placeholders})'  # noqa: S608

        def execute_many() -> None:  # (names from the models, values bound)
            session.connection().exec_driver_sql(insert_sql, params)  # type: ignore[arg-type]

        return execute_many
    stamps: dict[datetime, str] = {}  # timestamps repeat: format each distinct value once

    def copy_stamp(value: datetime | None) -> str:
        if value is None:
            return "\\N"
        cell = stamps.get(value)
        if cell is None:
            cell = stamps[value] = _copy_datetime(value)
        return cell

    json_cells: dict[int, str] = {}

    def copy_json(value: Any) -> str:
        # rows share their lists and dicts (a batch's audit field lists, cached language lists):
        # each object is serialised once; ``rows`` keeps them alive, so their ids stay unique
        cell = json_cells.get(id(value))
        if cell is None:
            cell = json_cells[id(value)] = _copy_json(value)
        return cell

    def formatter(column: Any) -> Callable[[Any], str]:
        if _is_json(column.type):
            return copy_json
        if isinstance(column.type, UTCDateTime):
            return copy_stamp
        return _copy_formatter(getattr(column.type, "impl", column.type))  # e.g. AutoString

    formatters = [formatter(column) for column in varying]
    tail = "".join("\t" + formatter(c)(constants[c.name]) for c in fixed) + "\n"
    # the COPY text of the whole batch in one pass (no per-row driver formatting), one write
    text_ = "".join([
        "\t".join([fmt(value) for fmt, value in zip(formatters, row, strict=True)]) + tail
        for row in rows
    ])
    copy_sql = f'COPY "{table.name}" ({quoted}) FROM STDIN'

    def copy() -> None:
        raw = session.connection().connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(copy_sql) as stream:  # type: ignore[union-attr]
            stream.write(text_)

    return copy


# --- COPY text format (PostgreSQL): one cell -------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.isoformat()


_COPY_FORMATTERS: dict[type, Callable[[Any], str]] = {
    str: _copy_text,
    bool: lambda value: "t" if value else "f",
    int: str,
    float: repr,
    uuid.UUID: str,
    datetime: _copy_datetime,
    date: date.isoformat,
    type(None): lambda value: "\\N",
}


def _copy_cell(value: Any) -> str:
    """A value as a cell of ``COPY … FROM STDIN`` (text format)."""
    formatter = _COPY_FORMATTERS.get(type(value))
    if formatter is not None:
        return formatter(value)
    for kind, formatter in _COPY_FORMATTERS.items():  # subclasses, e.g. StrEnum members
        if isinstance(value, kind):
            return formatter(value.value if isinstance(value, StrEnum) else value)
    raise TypeError(f"cannot COPY a {type(value).__name__}")


def _copy_formatter(type_: Any) -> Callable[[Any], str]:
    """The cell formatter for a column type (fast paths for the common Python types)."""
    for kind, formatter in (
        (String, _copy_str), (Uuid, _copy_uuid), (Boolean, _copy_bool), (Integer, _copy_int),
        (Float, _copy_float),
    ):
        if isinstance(type_, kind):
            return formatter
    return _copy_cell


def _copy_str(value: Any) -> str:
    if value is None:
        return "\\N"
    if type(value) is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_COPY_ESCAPES)
        return value
    return _copy_cell(value)


#: Ids are written several times per batch (an incident's id in its competences, timeline and
#: audit rows): each is formatted once. Bounded; the GIL makes the dict safe across threads.
_UUID_TEXT: dict[uuid.UUID, str] = {}


def _copy_uuid(value: Any) -> str:
    if value is None:
        return "\\N"
    if type(value) is not uuid.UUID:
        return _copy_cell(value)
    cell = _UUID_TEXT.get(value)
    if cell is None:
        if len(_UUID_TEXT) >= 20_000:
            _UUID_TEXT.clear()
        cell = _UUID_TEXT[value] = str(value)
    return cell


def _copy_bool(value: Any) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    return _copy_cell(value)


def _typed_copy(kind: type, render: Callable[[Any], str]) -> Callable[[Any], str]:
    """A cell formatter with a fast path for values of exactly ``kind`` (and ``None``)."""

    def copy(value: Any) -> str:
        if type(value) is kind:
            return render(value)
        if value is None:
            return "\\N"
        return _copy_cell(value)

    return copy


_copy_int = _typed_copy(int, str)
_copy_float = _typed_copy(float, repr)


def _copy_json(value: Any) -> str:
    # JSON goes as its text (orjson is ~8x faster than the driver's json)
    return "\\N" if value is None else _copy_text(orjson.dumps(value).decode())


def _to_json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _memoised(process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Timestamps repeat (a batch shares ``now``): convert each distinct value once."""
    if process is None:
        return None
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        if value not in seen:
            seen[value] = process(value)
        return seen[value]

    return cached


def _field_default(model: type[SQLModel], name: str) -> Callable[[], Any]:
    field_info = model.model_fields.get(name)
    if field_info is None:
        return lambda: None
    if field_info.default_factory is not None:
        return field_info.default_factory  # type: ignore[return-value]
    default = None if field_info.default is PydanticUndefined else field_info.default
    return lambda: default


def _is_json(type_: Any) -> bool:
    from sqlalchemy import JSON

    return isinstance(type_, JSON) or isinstance(getattr(type_, "impl", None), JSON)


def _audit_writer(
    session: Session, principal: Principal, now: datetime, action: str, resource: str,
    items: list[tuple[Any, list[str]]],
) -> Callable[[], None] | None:
    """The audit entries of a batch's writes: ``items`` are ``(resource id, field names)``."""
    ids = new_ordered_ids(len(items))
    return table_writer(
        session, AuditEvent, ("id", "resource_id", "fields"),
        [(record_id, _copy_uuid(resource_id), fields)
         for record_id, (resource_id, fields) in zip(ids, items, strict=True)],
        {"at": now, "kind": AuditKind.write.value, **principal_columns(principal),
         "action": action, "resource": resource},
    )


def _write_now(*writes: Callable[[], None] | None) -> None:
    for write in writes:
        if write is not None:
            write()


# --- the import run ---------------------------------------------------------------------------------


class _Importer(ABC):
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

    def plan(
        self, batch: list[tuple[int, Any]], prepared: Any, write: bool, result: ImportResult
    ) -> list[Callable[[], None]]:
        """Caller's thread: count the batch into ``result`` and return the writes to run on the
        database thread, in order (default: the whole of :meth:`process` there)."""
        return [lambda: self.process(batch, write, result)]

    @abstractmethod
    def process(self, batch: list[tuple[int, Any]], write: bool, result: ImportResult) -> None:
        """Write (or, in a dry run, only count) one batch of validated rows."""


class _Pipeline:
    """Runs an import's database work on one thread of its own while the caller parses.

    Per batch the database thread first *prepares* it (:meth:`_Importer.prepare`: look up the
    existing keys, reserve references), the caller's thread then *plans* it in Python
    (:meth:`_Importer.plan`: classify, render the rows) and hands back the writes, which the
    database thread runs in order. A batch's look-up is queued before the previous batch's writes,
    so the database always has work while Python renders (keys are unique within a file, so a
    look-up never depends on the writes still queued before it). The driver releases the GIL
    while it waits for the server: on PostgreSQL the server's time and Python's now overlap.

    Commits per batch (``atomic=false``) end the row locks and the advisory lock of a look-up, so
    then each batch is planned as soon as it is submitted: its look-up is queued after the
    previous batch's writes and commit (the thread runs its queue in order). Memory: at most
    ``_MAX_QUEUED`` rendered batches wait, so it stays bounded whatever the file's size. The
    session is used only on the database thread until :meth:`drain` returns.
    """

    _MAX_QUEUED = 2

    def __init__(self, importer: _Importer, result: ImportResult) -> None:
        self.importer, self.result = importer, result
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kokoma-import")
        self._prepared: deque[tuple[list[tuple[int, Any]], bool, bool, Future[Any]]] = deque()
        self._writes: deque[Future[Any]] = deque()

    def _run(self, call: Callable[[], Any]) -> Future[Any]:
        return self._executor.submit(contextvars.copy_context().run, call)

    def submit(self, batch: list[tuple[int, Any]], write: bool, *, commit: bool) -> None:
        importer = self.importer
        self._prepared.append(
            (batch, write, commit, self._run(lambda: importer.prepare(batch, write)))
        )
        if commit or len(self._prepared) > 1:
            self._plan_oldest()

    def _plan_oldest(self) -> None:
        batch, write, commit, prepared = self._prepared.popleft()
        writes = self.importer.plan(batch, self._result(prepared), write, self.result)
        if commit:
            writes.append(self.importer.session.commit)
        if writes:
            self._writes.append(self._run(lambda: [call() for call in writes]))
        while self._writes and (len(self._writes) > self._MAX_QUEUED or self._writes[0].done()):
            self._writes.popleft().result()  # re-raises what went wrong there

    def _result(self, prepared: Future[Any]) -> Any:
        try:
            return prepared.result()
        except BaseException:
            # writes queued before this look-up ran before it: when one of them failed, the
            # look-up only met the aborted transaction — the write's error is the one to report
            for earlier in self._writes:
                if earlier.done() and earlier.exception() is not None:
                    raise earlier.exception() from None  # type: ignore[misc]
            raise

    def drain(self) -> None:
        """Plan and write every submitted batch; re-raise the first error."""
        while self._prepared:
            self._plan_oldest()
        while self._writes:
            self._writes.popleft().result()

    def stop(self) -> None:
        """After a failure: wait for the queued work (its own errors are superseded)."""
        for *_, future in self._prepared:
            future.cancel()
        self._prepared.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._writes.clear()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def run_import(
    session: Session,
    kind: ImportKind,
    body_format: BodyFormat,
    chunks: Iterable[bytes],
    principal: Principal,
    *,
    dry_run: bool = False,
    atomic: bool = True,
) -> ImportResult:
    """Import a streamed body; raises :class:`Unprocessable` when the body as a whole is unreadable.

    Commits what it writes (see the module docstring); the caller's later commit is a no-op.
    """
    settings = get_settings()
    splitter = LineSplitter(chunks)
    importer_cls: type[_Importer] = IncidentImporter if kind == ImportKind.incidents else (
        ManagerImporter
    )
    result = ImportResult(dry_run=dry_run, atomic=atomic)
    pipeline: _Pipeline | None = None
    importer: _Importer | None = None
    try:
        records: Iterator[Record]
        if body_format == BodyFormat.csv:
            _, records = read_csv(
                splitter, allowed=importer_cls.columns, required=importer_cls.required
            )
        else:
            records = read_ndjson(splitter)
        importer = importer_cls(session, principal, ReferenceData.load(session))
        pipeline = _Pipeline(importer, result)
        is_csv = body_format == BodyFormat.csv
        write = not dry_run
        seen: set[int] = set()
        batch: list[tuple[int, Any]] = []
        for record in records:
            result.rows = record.row
            if record.values is None and record.problem is None:
                pass  # a blank record: skipped, but counted
            elif record.values is None:
                result.add_error(record.row, None, record.problem or "unreadable record")
            else:
                parsed, key, errors = importer.validate(record.values, is_csv)
                if key is not None:
                    digest = hash(key)
                    if digest in seen:
                        errors.append((importer.key_field,
                                       "appears more than once in this file (only the first "
                                       "occurrence is imported)"))
                        parsed = None
                    seen.add(digest)
                for field_name, message in errors:
                    result.add_error(record.row, field_name, message)
                if parsed is not None and not errors:
                    batch.append((record.row, parsed))
            if write and atomic and result.error_count:
                pipeline.drain()
                session.rollback()
                write = False
            if len(batch) >= settings.import_batch_rows:
                pipeline.submit(batch, write, commit=write and not atomic)
                batch = []
        if batch:
            pipeline.submit(batch, write, commit=False)
        pipeline.drain()
        if write:
            session.commit()
        elif not dry_run:
            # atomic and a row failed: nothing was created or updated (a dry run says what would be)
            result.created = result.updated = 0
        result.committed = write
        return result
    except UnreadableBody as exc:
        if pipeline is not None:
            pipeline.stop()
        session.rollback()
        raise Unprocessable(
            exc.message,
            type_=ProblemType.UNREADABLE_IMPORT,
            errors=exc.errors or [{"loc": ["body"], "msg": exc.message, "type": "unreadable"}],
        ) from None
    except BaseException:
        if pipeline is not None:
            pipeline.stop()
        session.rollback()
        raise
    finally:
        if pipeline is not None:
            pipeline.close()
        if importer is not None:
            importer.close()


# --- incidents ---------------------------------------------------------------------------------------

_INCIDENT_UPDATABLE = (
    "title", "description", "district", "lat", "lon", "category", "escalation_level",
    "languages", "occurred_at", "reported_at", "organisation_id",
    "has_reporter", "reporter_name", "reporter_contact", "reporter_anonymous",
)
#: After a reporter erasure (app.services.privacy) a re-import must not bring the data back:
#: these columns are then left as they are.
_KEPT_AFTER_ERASURE = frozenset({"reporter_name", "reporter_contact", "title", "description"})
_INCIDENT_SELECT = (
    Incident.id, Incident.source, Incident.external_id, Incident.status, Incident.version,
    *(getattr(Incident, name) for name in _INCIDENT_UPDATABLE),
    *([Incident.reporter_erased_at] if hasattr(Incident, "reporter_erased_at") else []),
)


def _pg_key_lookup(source: str, external_ids: list[str], *, lock: bool) -> Any:
    """``SELECT … FOR UPDATE`` of the incidents with these keys, one index probe per key.

    Written as ``unnest(keys) CROSS JOIN LATERAL (… LIMIT 1)`` on purpose: while the import's own
    rows are uncommitted the table has no statistics, and the planner then serves a plain
    ``external_id IN (…)`` by scanning every row of the source (``source = …`` looks selective)
    and filtering — a per-batch cost that grows with the table (quadratic over the import). The
    lateral form leaves it only the probe of ``uq_incident_source_external_id`` per key.
    """
    keys = (
        func.unnest(bindparam("external_ids", external_ids, type_=ARRAY(String)))
        .table_valued("external_id")
        .render_derived(name="k")
    )
    inner = (
        select(*_INCIDENT_SELECT)
        .where(Incident.source == source, Incident.external_id == keys.c.external_id)
        .limit(1)
    )
    if lock:
        inner = inner.with_for_update()
    found = inner.lateral("found")
    return select(found).select_from(keys).join(found, true())


_NO_TIME = datetime.min.replace(tzinfo=UTC)
#: The columns of an imported incident that differ per row, in the order _create gives them.
_CREATED_COLUMNS = (
    "id", "reference", "title", "description", "district", "lat", "lon", "category",
    "escalation_level", "languages", "status", "occurred_at", "reported_at", "source",
    "external_id", "organisation_id", "has_reporter", "reporter_name", "reporter_contact",
    "reporter_anonymous",
)
#: The ``data`` of every imported incident's ``created`` event (shared: never mutated).
_VIA_IMPORT: dict[str, Any] = {"via": "import"}


@dataclass
class _Prepared:
    """What :meth:`IncidentImporter.prepare` found out for one batch."""

    existing: dict[tuple[str, str], Any]
    competences: dict[uuid.UUID, list[str]]
    now: datetime = _NO_TIME
    year: int = 0
    first_reference: int = 0
    emit_created: bool = False


class IncidentImporter(_Importer):
    columns = INCIDENT_COLUMNS
    required = INCIDENT_REQUIRED
    key_field = "external_id"

    def __init__(self, session: Session, principal: Principal, refs: ReferenceData) -> None:
        super().__init__(session, principal, refs)
        #: Cells that repeat (code lists, timestamps, the header's column set) → parsed value,
        #: each bounded so memory stays constant.
        self._lists: dict[tuple[str, str], list[str]] = {}
        self._stamps: dict[str, datetime | None] = {}
        self._present: dict[tuple[str, ...], frozenset[str]] = {}
        self._listening = False
        self._blocks = ReferenceBlocks(session)

    def close(self) -> None:
        self._blocks.close()

    def validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[dict[str, Any] | None, Any, list[tuple[str | None, str]]]:
        if is_csv:
            fast = self._validate_csv_fast(values)
            if fast is not None:
                return fast, (fast["source"], fast["external_id"]), []
            return self._validate(values, is_csv)
        values, shape_errors = _flatten_api_shape(values)
        parsed, key, errors = self._validate(values, is_csv)
        errors = shape_errors + errors
        return (None if errors else parsed), key, errors

    def _validate_csv_fast(self, values: dict[str, Any]) -> dict[str, Any] | None:
        """The common case of a CSV row, checked with precompiled sets and cached cells.

        Returns exactly what :meth:`_validate` returns for a valid row, or ``None`` as soon as
        anything is off (an error, an unusual cell) — then :meth:`_validate` runs and words the
        errors. So this path decides nothing the full validation would decide differently.
        """
        try:
            get = values.get
            keys = tuple(values)
            present = self._present.get(keys)
            if present is None:
                if not all(name in _INCIDENT_COLUMN_SET for name in keys):
                    return None
                present = frozenset(keys)
                if len(self._present) < 64:
                    self._present[keys] = present
            external_id = _csv_text(get("external_id"), 200)
            title = _csv_text(get("title"), 200)
            district = _csv_text(get("district"), 64)
            category = _csv_text(get("category"), 64)
            if (external_id is None or title is None or district not in self.refs.districts
                    or category not in _CATEGORIES):
                return None
            source = _csv_text(get("source"), 64) or _IMPORT_SOURCE
            if source not in _SOURCE_SET:
                return None
            description = get("description") or ""
            if description:
                description = _csv_text(description, 20_000, strip=False) or ""
            lat = _float(get("lat"), True, -90.0, 90.0)
            lon = _float(get("lon"), True, -180.0, 180.0)
            if (lat is None) != (lon is None):
                return None
            level = _LEVELS.get(get("escalation_level"))  # type: ignore[arg-type]
            if level is None:
                return None
            competences = self._code_list("required_competences", get("required_competences"))
            languages = self._code_list("languages", get("languages"))
            if competences is None or languages is None:
                return None
            status = _csv_text(get("status"), 64)
            if status is not None and status not in _IMPORTABLE_STATUSES:
                return None
            occurred_at = self._stamp(get("occurred_at"))
            reported_at = self._stamp(get("reported_at"))
            organisation_id = _uuid(get("organisation_id"), True)
            if organisation_id is not None and organisation_id not in self.refs.organisations:
                return None
            name = _csv_text(get("reporter_name"), 200)
            contact = _csv_text(get("reporter_contact"), 320)
            anonymous = _bool(get("reporter_anonymous"), True)
        except FieldError:
            return None
        return {
            "source": source, "external_id": external_id, "title": title,
            "description": description, "district": district, "lat": lat, "lon": lon,
            "category": category, "escalation_level": level,
            "required_competences": competences, "languages": languages, "status": status,
            "occurred_at": occurred_at, "reported_at": reported_at,
            "organisation_id": organisation_id,
            "has_reporter": name is not None or contact is not None or anonymous is not None,
            "reporter_name": name, "reporter_contact": contact,
            "reporter_anonymous": bool(anonymous), "present": present,
        }

    def _code_list(self, name: str, raw: Any) -> list[str] | None:
        """A valid ``a|b`` cell as the full validation normalises it (cached), else ``None``.

        The cached lists are shared between rows: nothing downstream mutates them.
        """
        if raw is None or raw == "":
            return []
        cached = self._lists.get((name, raw))
        if cached is not None:
            return cached
        try:
            items = _list(raw, True, 20)
            if name == "languages":
                value = validate_language_codes(items)
            else:
                if not set(items) <= self.refs.competences:
                    return None
                value = sorted(set(items))
        except (FieldError, ValueError):
            return None
        if len(self._lists) < 4096:
            self._lists[(name, raw)] = value
        return value

    def _stamp(self, raw: Any) -> datetime | None:
        cached = self._stamps.get(raw, _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        value = _timestamp(raw, True)  # raises FieldError
        if len(self._stamps) < 4096:
            self._stamps[raw] = value
        return value

    def _validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[dict[str, Any] | None, Any, list[tuple[str | None, str]]]:
        errors: list[tuple[str | None, str]] = []
        out: dict[str, Any] = {}
        refs = self.refs
        if not is_csv:
            for name in values:
                if name not in INCIDENT_COLUMNS:
                    errors.append((name, "unknown field"))
        present = frozenset(name for name in values if name in INCIDENT_COLUMNS)

        def get(name: str, parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            try:
                return parse(values.get(name), is_csv, *args, **kwargs)
            except FieldError as exc:
                errors.append((name, str(exc)))
                return None

        external_id = get("external_id", _text, 200)
        source = get("source", _code) or IncidentSource.import_.value
        if source not in _SOURCES:
            errors.append(("source", f"unknown source '{source}'; one of {', '.join(_SOURCES)}"))
        if external_id is None and "external_id" not in {e[0] for e in errors}:
            errors.append(("external_id", "is required"))
        key = (source, external_id) if external_id is not None else None
        out["source"], out["external_id"] = source, external_id

        title = get("title", _text, 200)
        if title is None and "title" not in {e[0] for e in errors}:
            errors.append(("title", "is required"))
        out["title"] = title
        out["description"] = get("description", _text, 20_000, strip=False) or ""
        district = get("district", _code)
        if district is None:
            if "district" not in {e[0] for e in errors}:
                errors.append(("district", "is required"))
        elif district not in refs.districts:
            errors.append(("district", f"unknown district '{district}'"))
        out["district"] = district
        lat = get("lat", _float, -90.0, 90.0)
        lon = get("lon", _float, -180.0, 180.0)
        if (lat is None) != (lon is None) and not any(e[0] in ("lat", "lon") for e in errors):
            errors.append(("lat" if lat is None else "lon", "lat and lon go together"))
        out["lat"], out["lon"] = lat, lon
        category = get("category", _code)
        if category is None:
            if "category" not in {e[0] for e in errors}:
                errors.append(("category", "is required"))
        elif category not in _CATEGORIES:
            errors.append(("category", f"unknown category '{category}'"))
        out["category"] = category
        level = get("escalation_level", _int, 1, 9)
        if level is None and "escalation_level" not in {e[0] for e in errors}:
            errors.append(("escalation_level", "is required (1–9)"))
        out["escalation_level"] = level
        competences = get("required_competences", _list, 20) or []
        unknown = sorted(set(competences) - refs.competences)
        if unknown:
            errors.append(("required_competences",
                           f"unknown competence(s): {', '.join(c[:64] for c in unknown)}"))
        out["required_competences"] = sorted(set(competences))
        languages = get("languages", _list, 20) or []
        try:
            out["languages"] = validate_language_codes(languages)
        except ValueError as exc:
            errors.append(("languages", str(exc)[:200]))
        status = get("status", _code)
        if status is not None:
            if status not in _STATUSES:
                errors.append(("status", f"unknown status '{status}'"))
            elif status in (IncidentStatus.dispatched, IncidentStatus.in_progress):
                errors.append(("status", f"'{status}' is set by dispatch and cannot be imported"))
        out["status"] = status
        out["occurred_at"] = get("occurred_at", _timestamp)
        out["reported_at"] = get("reported_at", _timestamp)
        organisation_id = get("organisation_id", _uuid)
        if organisation_id is not None and organisation_id not in refs.organisations:
            errors.append(("organisation_id", "unknown organisation"))
        out["organisation_id"] = organisation_id
        name = get("reporter_name", _text, 200)
        contact = get("reporter_contact", _text, 320)
        anonymous = get("reporter_anonymous", _bool)
        out["has_reporter"] = name is not None or contact is not None or anonymous is not None
        out["reporter_name"], out["reporter_contact"] = name, contact
        out["reporter_anonymous"] = bool(anonymous)
        out["present"] = present
        if errors:
            return None, key, errors
        return out, key, errors

    def process(
        self, batch: list[tuple[int, dict[str, Any]]], write: bool, result: ImportResult
    ) -> None:
        for call in self.plan(batch, self.prepare(batch, write), write, result):
            call()

    def prepare(self, batch: list[tuple[int, dict[str, Any]]], write: bool) -> _Prepared:
        """The stored incidents with the batch's keys (locked when writing) and their
        competences; when writing, references for the new ones (allocated in file order) and
        whether anybody listens for ``incident.created``."""
        session = self.session
        self.plan_for_growing_tables()
        by_source: dict[str, list[str]] = defaultdict(list)
        for _, row in batch:
            by_source[row["source"]].append(row["external_id"])
        existing: dict[tuple[str, str], Any] = {}
        for source, external_ids in by_source.items():
            if self.is_pg:
                stmt = _pg_key_lookup(source, external_ids, lock=write)
            else:
                stmt = select(*_INCIDENT_SELECT).where(
                    Incident.source == source,
                    Incident.external_id.in_(external_ids),  # type: ignore[union-attr]
                )
            for found in session.execute(stmt):
                existing[(found.source, found.external_id)] = found
        competences: dict[uuid.UUID, list[str]] = defaultdict(list)
        if existing:
            ids = [found.id for found in existing.values()]
            for incident_id, code in session.execute(
                select(IncidentCompetence.incident_id, IncidentCompetence.competence_code)
                .where(IncidentCompetence.incident_id.in_(ids))
            ):
                competences[incident_id].append(code)
        prepared = _Prepared(existing, competences)
        new = len(batch) - len(existing)
        if write and new:
            clock = get_clock()
            prepared.now = clock.now()
            prepared.year = prepared.now.astimezone(clock.tz).year
            prepared.first_reference = self._blocks.reserve("KOK", prepared.year, new)
            # an import writes no incident.created outbox rows when no subscription could
            # receive them (measured: a quarter of the import's time; see outbox.listening);
            # the answer holds for the transaction
            if self._once_per_transaction("listening"):
                self._listening = outbox_listening(session, "incident.created")
            prepared.emit_created = self._listening
        return prepared

    def plan(
        self, batch: list[tuple[int, dict[str, Any]]], prepared: _Prepared, write: bool,
        result: ImportResult,
    ) -> list[Callable[[], None]]:
        existing, competences = prepared.existing, prepared.competences
        creates: list[dict[str, Any]] = []
        updates: list[tuple[Any, dict[str, Any], list[str], bool]] = []
        for _, row in batch:
            found = existing.get((row["source"], row["external_id"]))
            if found is None:
                creates.append(row)
                continue
            changed, competences_changed = _incident_changes(
                found, sorted(competences.get(found.id, [])), row
            )
            if changed or competences_changed:
                updates.append((found, row, changed, competences_changed))
            else:
                result.unchanged += 1
        result.created += len(creates)
        result.updated += len(updates)
        if not write:
            return []
        return [*self._create(creates, prepared), *self._update(updates)]

    def _create(
        self, rows: list[dict[str, Any]], prepared: _Prepared
    ) -> list[Callable[[], None]]:
        if not rows:
            return []
        session, principal = self.session, self.principal
        now, year, first = prepared.now, prepared.year, prepared.first_reference
        emit_created = prepared.emit_created
        created_constants = {"status_changed_at": now, "version": 1, "created_at": now,
                             "updated_at": now}
        incidents: list[tuple[Any, ...]] = []
        links: list[tuple[uuid.UUID, str]] = []
        events: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        outbox: list[tuple[uuid.UUID, dict[str, Any], uuid.UUID | None]] = []
        audits: list[tuple[Any, list[str]]] = []
        ids = new_ordered_ids(2 * len(rows))
        outbox_ids = new_ordered_ids(len(rows)) if emit_created else []
        fields_of: dict[frozenset[str], list[str]] = {}
        reported = IncidentStatus.reported.value
        for offset, row in enumerate(rows):
            incident_id, event_id = ids[2 * offset], ids[2 * offset + 1]
            status = row["status"] or reported
            values = (
                incident_id, f"KOK-{year}-{first + offset:05d}", row["title"],
                row["description"], row["district"], row["lat"], row["lon"], row["category"],
                row["escalation_level"], row["languages"], status, row["occurred_at"],
                row["reported_at"] or now, row["source"], row["external_id"],
                row["organisation_id"], row["has_reporter"], row["reporter_name"],
                row["reporter_contact"], row["reporter_anonymous"],
            )
            incidents.append(values)
            for code in row["required_competences"]:
                links.append((incident_id, code))
            events.append((event_id, incident_id, status))
            if emit_created:
                view = incident_webhook_view(
                    {**dict(zip(_CREATED_COLUMNS, values, strict=True)), **created_constants},
                    row["required_competences"],
                )
                outbox.append((outbox_ids[offset], {"incident": view}, row["organisation_id"]))
            present = row["present"]
            fields = fields_of.get(present)
            if fields is None:
                fields = fields_of[present] = public_incident_fields(present)
            audits.append((incident_id, fields))
        write_incidents = table_writer(
            session, Incident, _CREATED_COLUMNS, incidents, created_constants
        )

        def insert_incidents() -> None:
            try:
                write_incidents()  # type: ignore[misc]
            except Exception as exc:
                _raise_if_duplicate(exc)
                raise

        writes = [
            table_writer(session, IncidentCompetence, ("incident_id", "competence_code"), links),
            table_writer(
                session, IncidentEvent, ("id", "incident_id", "to_status"), events,
                {"at": now, "type": "created", **actor_columns(principal),
                 "from_status": None, "note": None,
                 "data": _VIA_IMPORT},
            ),
            table_writer(
                session, OutboxEvent, ("id", "payload", "organisation_id"), outbox,
                {"event_type": "incident.created", "created_at": now, "fanned_out_at": None},
            ),
            _audit_writer(session, principal, now, "create", "incident", audits),
        ]
        return [insert_incidents, *(call for call in writes if call is not None)]

    def _update(
        self, updates: list[tuple[Any, dict[str, Any], list[str], bool]]
    ) -> list[Callable[[], None]]:
        if not updates:
            return []
        session, principal = self.session, self.principal
        now = get_clock().now()
        table = Incident.__table__
        params, events, audits = [], [], []
        replace_ids, links = [], []
        for found, row, changed, competences_changed in updates:
            new = {name: (row[name] if name in changed else getattr(found, name))
                   for name in _INCIDENT_UPDATABLE}
            params.append({"b_id": found.id, **{f"b_{k}": v for k, v in new.items()}})
            names = [*changed, *(["required_competences"] if competences_changed else [])]
            public = public_incident_fields(names)
            events.append({
                "id": uuid.uuid4(), "incident_id": found.id, "at": now, "type": "updated",
                **actor_columns(principal),
                "from_status": None, "to_status": None, "note": None,
                "data": {"fields": public, "via": "import"},
            })
            audits.append((found.id, public))
            if competences_changed:
                replace_ids.append(found.id)
                links.extend({"incident_id": found.id, "competence_code": code}
                             for code in row["required_competences"])
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({
                **{name: bindparam(f"b_{name}") for name in _INCIDENT_UPDATABLE},
                "version": table.c.version + 1,
                "updated_at": now,
            })
        )
        write_links = bulk_writer(session, IncidentCompetence, links)

        def update_incidents() -> None:
            session.connection().execute(stmt, params)
            if replace_ids:
                session.connection().execute(
                    delete(IncidentCompetence).where(
                        IncidentCompetence.incident_id.in_(replace_ids)
                    )
                )
                if write_links is not None:
                    write_links()

        writes = [
            bulk_writer(session, IncidentEvent, events),
            _audit_writer(session, principal, now, "update", "incident", audits),
        ]
        return [update_incidents, *(call for call in writes if call is not None)]


_SOURCES = tuple(s.value for s in IncidentSource)
_CATEGORIES = frozenset(c.value for c in IncidentCategory)
_STATUSES = frozenset(s.value for s in IncidentStatus)
# precompiled checks of the fast CSV path (IncidentImporter._validate_csv_fast)
_SOURCE_SET = frozenset(_SOURCES)
_IMPORT_SOURCE = IncidentSource.import_.value
_IMPORTABLE_STATUSES = _STATUSES - {IncidentStatus.dispatched.value,
                                    IncidentStatus.in_progress.value}
_INCIDENT_COLUMN_SET = frozenset(INCIDENT_COLUMNS)
_LEVELS = {str(level): level for level in range(1, 10)}
_MISSING = object()


_REPORTER_KEYS = {"name": "reporter_name", "contact": "reporter_contact",
                  "anonymous": "reporter_anonymous"}


def _flatten_api_shape(
    values: dict[str, Any],
) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    """An NDJSON incident may also come as the API writes it: ``location {lat, lon}`` and
    ``reporter {name, contact, anonymous}`` (each may be ``null``: none) instead of the flat
    columns. Returns the flat form and the errors of the nested fields."""
    if "location" not in values and "reporter" not in values:
        return values, []
    flat, errors = dict(values), []
    location = flat.pop("location", _MISSING)
    if location is not _MISSING:
        if "lat" in values or "lon" in values:
            errors.append(("location", "give either location or lat/lon"))
            flat.pop("lat", None)  # one error for the conflict, not a second one for lat/lon
            flat.pop("lon", None)
        elif location is None:
            flat["lat"] = flat["lon"] = None
        elif isinstance(location, dict) and set(location) == {"lat", "lon"}:
            flat["lat"], flat["lon"] = location["lat"], location["lon"]
        else:
            errors.append(("location", "must be {\"lat\": …, \"lon\": …} or null"))
    reporter = flat.pop("reporter", _MISSING)
    if reporter is not _MISSING:
        if any(column in values for column in _REPORTER_KEYS.values()):
            errors.append(("reporter", "give either reporter or the reporter_… fields"))
            for column in _REPORTER_KEYS.values():
                flat.pop(column, None)
        elif reporter is None:
            flat.update(dict.fromkeys(_REPORTER_KEYS.values()))
        elif isinstance(reporter, dict) and set(reporter) <= set(_REPORTER_KEYS):
            flat.update({column: reporter.get(key) for key, column in _REPORTER_KEYS.items()})
        else:
            errors.append(("reporter", "must be {\"name\", \"contact\", \"anonymous\"} or null"))
    return flat, errors


def _csv_text(raw: Any, max_len: int, *, strip: bool = True) -> str | None:
    """:func:`_text` of a CSV cell, inlined for the fast path (same result, same errors)."""
    if raw is None:
        return None
    if raw[:1] == "'":
        raw = unescape_cell(raw)
    if strip:
        raw = raw.strip()
    if not raw:
        return None
    if len(raw) > max_len:
        raise FieldError(f"is longer than {max_len} characters")
    return raw  # type: ignore[no-any-return]


def _incident_changes(
    found: Any, stored_competences: list[str], row: dict[str, Any]
) -> tuple[list[str], bool]:
    present = row["present"]
    names = ["title", "district", "category", "escalation_level"]
    optional = ("description", "lat", "lon", "languages", "occurred_at", "organisation_id")
    names.extend(name for name in optional if name in present)
    if "reported_at" in present and row["reported_at"] is not None:
        names.append("reported_at")
    if present & set(REPORTER_COLUMNS):
        names.extend(("has_reporter", "reporter_name", "reporter_contact", "reporter_anonymous"))
    if getattr(found, "reporter_erased_at", None) is not None:
        names = [name for name in names if name not in _KEPT_AFTER_ERASURE]
    changed = [name for name in names if getattr(found, name) != row[name]]
    competences_changed = (
        "required_competences" in present and stored_competences != row["required_competences"]
    )
    return changed, competences_changed


def incident_webhook_view(values: dict[str, Any], competences: list[str]) -> dict[str, Any]:
    """What :func:`app.services.incidents.webhook_view` renders, built without a model pass."""
    location = None
    if values["lat"] is not None and values["lon"] is not None:
        location = {"lat": values["lat"], "lon": values["lon"]}
    organisation_id = values["organisation_id"]
    return {
        "id": str(values["id"]),
        "reference": values["reference"],
        "title": values["title"],
        "description": values["description"],
        "district": values["district"],
        "location": location,
        "category": values["category"],
        "escalation_level": values["escalation_level"],
        "required_competences": list(competences),
        "languages": list(values["languages"]),
        "status": values["status"],
        "occurred_at": _rfc3339(values["occurred_at"]),
        "reported_at": _rfc3339(values["reported_at"]),
        "source": values["source"],
        "external_id": values["external_id"],
        "organisation_id": str(organisation_id) if organisation_id is not None else None,
        "reporter": None,
        "version": values["version"],
        "created_at": _rfc3339(values["created_at"]),
        "updated_at": _rfc3339(values["updated_at"]),
    }


def _raise_if_duplicate(exc: Exception) -> None:
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


# --- managers ---------------------------------------------------------------------------------------

_MANAGER_UPDATABLE = (
    "display_name", "phone", "organisation_id", "home_district", "languages",
    "max_open_assignments", "notify_by_email",
)


def _competence_holdings(raw: Any, is_csv: bool) -> Any:
    """``code:certified_on:expires_on|…`` (CSV) or a JSON list of objects (NDJSON)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise FieldError("must be 'code:certified_on:expires_on|…' or a list of objects")
    holdings = []
    for part in raw.split("|"):
        part = part.strip()
        if not part:
            continue
        pieces = [p.strip() for p in part.split(":")]
        if len(pieces) not in (2, 3):
            raise FieldError("each entry must be code:certified_on[:expires_on]")
        holdings.append({
            "code": pieces[0],
            "certified_on": pieces[1],
            "expires_on": pieces[2] if len(pieces) == 3 and pieces[2] else None,
        })
    return holdings


class ManagerImporter(_Importer):
    columns = MANAGER_COLUMNS
    required = MANAGER_REQUIRED
    key_field = "email"

    def validate(
        self, values: dict[str, Any], is_csv: bool
    ) -> tuple[Any, Any, list[tuple[str | None, str]]]:
        from app.models.manager_schemas import ManagerCreate

        errors: list[tuple[str | None, str]] = []
        body: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in MANAGER_COLUMNS:
                errors.append((name, "unknown field"))
                continue
            try:
                if name in ("districts", "languages"):
                    value: Any = _list(raw, is_csv, 100)
                elif name == "competences":
                    value = _competence_holdings(raw, is_csv)
                elif name in ("max_open_assignments",):
                    value = _int(raw, is_csv, 1, 100)
                elif name == "notify_by_email":
                    value = _bool(raw, is_csv)
                elif name in ("display_name", "phone", "email", "status", "home_district",
                              "organisation_id"):
                    value = _text(raw, is_csv, 320)
                else:  # pragma: no cover - every column is handled above
                    value = raw
            except FieldError as exc:
                errors.append((name, str(exc)))
                continue
            if value is not None:
                body[name] = value
        email = body.get("email")
        key = email.strip().lower() if isinstance(email, str) else None
        if errors:
            return None, key, errors
        try:
            parsed = ManagerCreate.model_validate(body)
        except ValidationError as exc:
            for err in exc.errors():
                loc = err.get("loc") or ()
                name = str(loc[0]) if loc else None
                message = str(err.get("msg", "invalid"))
                if name is not None and name not in body and err.get("type") == "missing":
                    message = "is required"
                errors.append((name, message[:200]))
            return None, key, errors
        refs = self.refs
        if parsed.home_district not in refs.districts:
            errors.append(("home_district", f"unknown district '{parsed.home_district}'"))
        unknown = sorted(set(parsed.districts) - refs.districts)
        if unknown:
            errors.append(("districts", f"unknown district(s): {', '.join(unknown)}"))
        unknown = sorted({h.code for h in parsed.competences} - refs.competences)
        if unknown:
            errors.append(("competences", f"unknown competence(s): {', '.join(unknown)}"))
        if parsed.organisation_id is not None and parsed.organisation_id not in refs.organisations:
            errors.append(("organisation_id", "unknown organisation"))
        row = {
            "email": parsed.email,
            "display_name": parsed.display_name,
            "phone": parsed.phone,
            "organisation_id": parsed.organisation_id,
            "status": ManagerStatus(parsed.status).value,
            "home_district": parsed.home_district,
            "districts": sorted(set(parsed.districts) - {parsed.home_district}),
            "languages": parsed.languages,
            "max_open_assignments": parsed.max_open_assignments,
            "notify_by_email": parsed.notify_by_email,
            "competences": sorted(
                (h.code, h.certified_on, h.expires_on) for h in parsed.competences
            ),
            "present": {name for name in values if name in MANAGER_COLUMNS},
        }
        return (None if errors else row), parsed.email, errors

    def process(
        self, batch: list[tuple[int, dict[str, Any]]], write: bool, result: ImportResult
    ) -> None:
        session = self.session
        self.plan_for_growing_tables()
        emails = [row["email"] for _, row in batch]
        stmt = select(Manager.id, Manager.email, Manager.version,
                      *(getattr(Manager, n) for n in _MANAGER_UPDATABLE)).where(
            Manager.email.in_(emails)
        )
        if write and self.is_pg:
            stmt = stmt.with_for_update()
        existing = {found.email: found for found in session.execute(stmt)}
        districts: dict[uuid.UUID, list[str]] = defaultdict(list)
        holdings: dict[uuid.UUID, list[tuple[str, date, date | None]]] = defaultdict(list)
        if existing:
            ids = [found.id for found in existing.values()]
            for manager_id, code in session.execute(
                select(ManagerDistrict.manager_id, ManagerDistrict.district_code)
                .where(ManagerDistrict.manager_id.in_(ids))
            ):
                districts[manager_id].append(code)
            for manager_id, code, certified_on, expires_on in session.execute(
                select(ManagerCompetence.manager_id, ManagerCompetence.competence_code,
                       ManagerCompetence.certified_on, ManagerCompetence.expires_on)
                .where(ManagerCompetence.manager_id.in_(ids))
            ):
                holdings[manager_id].append((code, certified_on, expires_on))
        creates, updates = [], []
        for _, row in batch:
            found = existing.get(row["email"])
            if found is None:
                creates.append(row)
                continue
            present = row["present"]
            changed = [
                name for name in _MANAGER_UPDATABLE
                if name in present and getattr(found, name) != row[name]
            ]
            if "home_district" in changed or "districts" in present:
                wanted = row["districts"] if "districts" in present else sorted(
                    set(districts.get(found.id, [])) - {row["home_district"]}
                )
                if sorted(districts.get(found.id, [])) != wanted:
                    changed.append("districts")
                    row = {**row, "districts": wanted}
            if "competences" in present and sorted(holdings.get(found.id, [])) != row[
                "competences"
            ]:
                changed.append("competences")
            if changed:
                updates.append((found, row, changed))
            else:
                result.unchanged += 1
        result.created += len(creates)
        result.updated += len(updates)
        if write:
            self._create(creates)
            self._update(updates)

    def _create(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        now = get_clock().now()
        managers, links, certs, audits = [], [], [], []
        for row in rows:
            manager_id = uuid.uuid4()
            managers.append({
                "id": manager_id,
                "display_name": row["display_name"],
                "email": row["email"],
                "phone": row["phone"],
                "organisation_id": row["organisation_id"],
                "status": row["status"],
                "home_district": row["home_district"],
                "languages": row["languages"],
                "max_open_assignments": row["max_open_assignments"],
                "notify_by_email": row["notify_by_email"],
                "open_assignments": 0,
                "last_assigned_at": None,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            })
            links.extend({"manager_id": manager_id, "district_code": code}
                         for code in row["districts"])
            certs.extend({"manager_id": manager_id, "competence_code": code,
                          "certified_on": certified_on, "expires_on": expires_on}
                         for code, certified_on, expires_on in row["competences"])
            audits.append((manager_id, sorted(row["present"])))
        try:
            bulk_insert(self.session, Manager, managers)
        except Exception as exc:
            _raise_if_duplicate(exc)
            raise
        bulk_insert(self.session, ManagerDistrict, links)
        bulk_insert(self.session, ManagerCompetence, certs)
        _write_now(
            _audit_writer(self.session, self.principal, now, "create", "manager", audits)
        )

    def _update(self, updates: list[tuple[Any, dict[str, Any], list[str]]]) -> None:
        if not updates:
            return
        session = self.session
        now = get_clock().now()
        table = Manager.__table__
        params, audits = [], []
        district_ids, district_rows, cert_ids, cert_rows = [], [], [], []
        for found, row, changed in updates:
            params.append({
                "b_id": found.id,
                **{f"b_{name}": (row[name] if name in changed else getattr(found, name))
                   for name in _MANAGER_UPDATABLE},
            })
            audits.append((found.id, sorted(changed)))
            if "districts" in changed:
                district_ids.append(found.id)
                district_rows.extend({"manager_id": found.id, "district_code": code}
                                     for code in row["districts"])
            if "competences" in changed:
                cert_ids.append(found.id)
                cert_rows.extend({"manager_id": found.id, "competence_code": code,
                                  "certified_on": certified_on, "expires_on": expires_on}
                                 for code, certified_on, expires_on in row["competences"])
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({
                **{name: bindparam(f"b_{name}") for name in _MANAGER_UPDATABLE},
                "version": table.c.version + 1,
                "updated_at": now,
            }),
            params,
        )
        if district_ids:
            session.connection().execute(
                delete(ManagerDistrict).where(
                    ManagerDistrict.manager_id.in_(district_ids)
                )
            )
            bulk_insert(session, ManagerDistrict, district_rows)
        if cert_ids:
            session.connection().execute(
                delete(ManagerCompetence).where(
                    ManagerCompetence.manager_id.in_(cert_ids)
                )
            )
            bulk_insert(session, ManagerCompetence, cert_rows)
        _write_now(
            _audit_writer(session, self.principal, now, "update", "manager", audits)
        )
