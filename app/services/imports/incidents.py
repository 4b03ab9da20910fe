"""The incident importer: rows keyed by ``(source, external_id)``; per batch one look-up of the
stored incidents (locked when writing), then bulk writes of the new ones (incident, competences,
timeline, outbox, audit — built by :mod:`app.services.incident_records`, as the API builds
them) and of the changed ones."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, bindparam, delete, func, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.security import Principal
from app.models.base import new_ordered_ids, table_of
from app.models.incident import Incident, IncidentCompetence, IncidentEvent
from app.models.outbox import OutboxEvent
from app.repositories.bulk import bulk_writer, table_writer
from app.services.imports.base import (
    INCIDENT_COLUMNS,
    INCIDENT_REQUIRED,
    Importer,
    ImportResult,
    audit_writer,
    raise_if_duplicate,
)
from app.services.imports.incident_rows import IncidentRowValidation
from app.services.imports.refdata import ReferenceData
from app.services.incident_records import (
    NEW_INCIDENT_COLUMNS,
    REPORTER_COLUMNS,
    created_event_columns,
    incident_webhook_view,
    new_incident_constants,
    new_incident_row,
    public_incident_fields,
)
from app.services.outbox import listening as outbox_listening
from app.services.references import (
    INCIDENT_SCOPE,
    ReferenceBlocks,
    format_incident_reference,
    parse_incident_reference,
)
from app.services.timeline import actor_columns

log = logging.getLogger("kokoma.imports")

_INCIDENT_UPDATABLE = (
    "title",
    "description",
    "district",
    "lat",
    "lon",
    "category",
    "escalation_level",
    "languages",
    "occurred_at",
    "reported_at",
    "organisation_id",
    "has_reporter",
    "reporter_name",
    "reporter_contact",
    "reporter_anonymous",
)
#: After a reporter erasure (app.services.privacy) a re-import must not bring the data back:
#: these columns are then left as they are.
_KEPT_AFTER_ERASURE = frozenset({"reporter_name", "reporter_contact", "title", "description"})
_INCIDENT_SELECT = (
    col(Incident.id),
    col(Incident.source),
    col(Incident.external_id),
    col(Incident.reference),
    col(Incident.status),
    col(Incident.version),
    *(col(getattr(Incident, name)) for name in _INCIDENT_UPDATABLE),
    *([col(Incident.reporter_erased_at)] if hasattr(Incident, "reporter_erased_at") else []),
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
        .where(col(Incident.source) == source, col(Incident.external_id) == keys.c.external_id)
        .limit(1)
    )
    if lock:
        inner = inner.with_for_update()
    found = inner.lateral("found")
    return select(found).select_from(keys).join(found, true())


_NO_TIME = datetime.min.replace(tzinfo=UTC)
#: The ``data`` of every imported incident's ``created`` event (shared: never mutated).
_VIA_IMPORT: dict[str, Any] = {"via": "import"}
_STATUS = NEW_INCIDENT_COLUMNS.index("status")


@dataclass
class _Prepared:
    """What :meth:`IncidentImporter.prepare` found out for one batch."""

    existing: dict[tuple[str | None, str], Any]
    competences: dict[uuid.UUID, list[str]]
    now: datetime = _NO_TIME
    year: int = 0
    first_reference: int = 0
    #: the allocated numbers one by one, when the batch also restores references
    numbers: list[int] | None = None
    emit_created: bool = False


class IncidentImporter(IncidentRowValidation, Importer):
    columns = INCIDENT_COLUMNS
    required = INCIDENT_REQUIRED
    key_field = "external_id"

    def __init__(self, session: Session, principal: Principal, refs: ReferenceData) -> None:
        super().__init__(session, principal, refs)
        self._init_caches()
        self._listening = False
        self._blocks = ReferenceBlocks(session)

    def close(self) -> None:
        self._blocks.close()

    def commit(self) -> None:
        super().commit()
        self._blocks.keep()

    def rollback(self) -> None:
        """A rejected or failed import consumes no references: the blocks it reserved (apart
        from the session, on PostgreSQL) go back to the counter where nobody took one since."""
        super().rollback()
        try:
            self._blocks.give_back()
        except Exception:  # the import's own error is the one to report; the numbers stay unused
            log.warning("references of a rolled-back import not given back", exc_info=True)

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
        references: list[str] = []
        for _, row in batch:
            if row["external_id"] is None:
                references.append(row["reference"])
            else:
                by_source[row["source"]].append(row["external_id"])
        existing: dict[tuple[str | None, str], Any] = {}
        for source, external_ids in by_source.items():
            if self.is_pg:
                stmt = _pg_key_lookup(source, external_ids, lock=write)
            else:
                stmt = select(*_INCIDENT_SELECT).where(
                    col(Incident.source) == source,
                    col(Incident.external_id).in_(external_ids),
                )
            for found in session.execute(stmt):
                existing[(found.source, found.external_id)] = found
        if references:  # rows without an external id, keyed by their reference
            stmt = select(*_INCIDENT_SELECT).where(col(Incident.reference).in_(references))
            if write and self.is_pg:
                stmt = stmt.with_for_update()
            for found in session.execute(stmt):
                existing[(None, found.reference)] = found
        competences: dict[uuid.UUID, list[str]] = defaultdict(list)
        if existing:
            ids = [found.id for found in existing.values()]
            for incident_id, code in session.execute(
                select(
                    col(IncidentCompetence.incident_id), col(IncidentCompetence.competence_code)
                ).where(col(IncidentCompetence.incident_id).in_(ids))
            ):
                competences[incident_id].append(code)
        prepared = _Prepared(existing, competences)
        new = len(batch) - len(existing)
        if write and new:
            clock = get_clock()
            prepared.now = clock.now()
            prepared.year = prepared.now.astimezone(clock.tz).year
            if references:
                prepared.numbers = self._allocate_around(batch, existing, prepared.year)
            else:
                prepared.first_reference = self._blocks.reserve(INCIDENT_SCOPE, prepared.year, new)
            # an import writes no incident.created outbox rows when no subscription could
            # receive them (measured: a quarter of the import's time; see outbox.listening);
            # the answer holds for the transaction
            if self._once_per_transaction("listening"):
                self._listening = outbox_listening(session, "incident.created")
            prepared.emit_created = self._listening
        return prepared

    def _allocate_around(
        self, batch: list[tuple[int, dict[str, Any]]], existing: dict[Any, Any], year: int
    ) -> list[int]:
        """The numbers of the new rows that get one allocated, in file order, when the batch
        also restores references (rows keyed by their reference): the counter is raised to each
        restored one where it stands in the file, so a database that got its incidents from an
        export gets them back under the same references, and an allocation never meets one."""
        numbers: list[int] = []
        pending = 0

        def allocate() -> None:
            nonlocal pending
            if pending:
                first = self._blocks.reserve(INCIDENT_SCOPE, year, pending)
                numbers.extend(range(first, first + pending))
                pending = 0

        for _, row in batch:
            if row["external_id"] is None:
                if (None, row["reference"]) not in existing:
                    allocate()
                    parsed = parse_incident_reference(row["reference"])
                    if parsed is None:  # the row's validation refuses such a reference
                        raise ValueError(f"not an incident reference: {row['reference']!r}")
                    restored_year, number = parsed
                    self._blocks.raise_to(INCIDENT_SCOPE, restored_year, number)
            elif (row["source"], row["external_id"]) not in existing:
                pending += 1
        allocate()
        return numbers

    def plan(
        self,
        batch: list[tuple[int, dict[str, Any]]],
        prepared: _Prepared,
        write: bool,
        result: ImportResult,
    ) -> list[Callable[[], None]]:
        existing, competences = prepared.existing, prepared.competences
        creates: list[dict[str, Any]] = []
        updates: list[tuple[Any, dict[str, Any], list[str], bool]] = []
        for _, row in batch:
            found = existing.get(
                (row["source"], row["external_id"])
                if row["external_id"] is not None
                else (None, row["reference"])
            )
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

    def _create(self, rows: list[dict[str, Any]], prepared: _Prepared) -> list[Callable[[], None]]:
        if not rows:
            return []
        session, principal = self.session, self.principal
        now, year, first = prepared.now, prepared.year, prepared.first_reference
        numbers = prepared.numbers
        emit_created = prepared.emit_created
        created_constants = new_incident_constants(now)
        incidents: list[tuple[Any, ...]] = []
        links: list[tuple[uuid.UUID, str, str]] = []
        events: list[tuple[uuid.UUID, uuid.UUID, str]] = []
        outbox: list[tuple[uuid.UUID, dict[str, Any], uuid.UUID | None]] = []
        audits: list[tuple[Any, list[str]]] = []
        ids = new_ordered_ids(2 * len(rows))
        outbox_ids = new_ordered_ids(len(rows)) if emit_created else []
        fields_of: dict[frozenset[str], list[str]] = {}
        allocated = 0
        for offset, row in enumerate(rows):
            incident_id, event_id = ids[2 * offset], ids[2 * offset + 1]
            reference = row["reference"]  # kept when the row is keyed by it
            if reference is None:
                number = first + allocated if numbers is None else numbers[allocated]
                reference = format_incident_reference(year, number)
                allocated += 1
            values = new_incident_row(incident_id, reference, row, now)
            incidents.append(values)
            for code in row["required_competences"]:
                links.append((incident_id, code, row["district"]))
            events.append((event_id, incident_id, values[_STATUS]))
            if emit_created:
                view = incident_webhook_view(
                    {
                        **dict(zip(NEW_INCIDENT_COLUMNS, values, strict=True)),
                        **created_constants,
                    }.__getitem__,
                    row["required_competences"],
                )
                outbox.append((outbox_ids[offset], {"incident": view}, row["organisation_id"]))
            present = row["present"]
            fields = fields_of.get(present)
            if fields is None:
                fields = fields_of[present] = public_incident_fields(present)
            audits.append((incident_id, fields))
        write_incidents = table_writer(
            session, Incident, NEW_INCIDENT_COLUMNS, incidents, created_constants
        )

        def insert_incidents() -> None:
            if write_incidents is None:  # no incident to create in this batch
                return
            try:
                write_incidents()
            except Exception as exc:
                raise_if_duplicate(exc)
                raise

        writes = [
            table_writer(
                session,
                IncidentCompetence,
                ("incident_id", "competence_code", "district"),
                links,
            ),
            table_writer(
                session,
                IncidentEvent,
                ("id", "incident_id", "to_status"),
                events,
                created_event_columns(principal, now, _VIA_IMPORT),
            ),
            table_writer(
                session,
                OutboxEvent,
                ("id", "payload", "organisation_id"),
                outbox,
                {"event_type": "incident.created", "created_at": now, "fanned_out_at": None},
            ),
            audit_writer(session, principal, now, "create", "incident", audits),
        ]
        return [insert_incidents, *(call for call in writes if call is not None)]

    def _update(
        self, updates: list[tuple[Any, dict[str, Any], list[str], bool]]
    ) -> list[Callable[[], None]]:
        if not updates:
            return []
        session, principal = self.session, self.principal
        now = get_clock().now()
        table = table_of(Incident)
        params, events, audits = [], [], []
        replace_ids, links = [], []
        for found, row, changed, competences_changed in updates:
            new = {
                name: (row[name] if name in changed else getattr(found, name))
                for name in _INCIDENT_UPDATABLE
            }
            params.append({"b_id": found.id, **{f"b_{k}": v for k, v in new.items()}})
            names = [*changed, *(["required_competences"] if competences_changed else [])]
            public = public_incident_fields(names)
            events.append(
                {
                    "id": uuid.uuid4(),
                    "incident_id": found.id,
                    "at": now,
                    "type": "updated",
                    **actor_columns(principal),
                    "from_status": None,
                    "to_status": None,
                    "note": None,
                    "data": {"fields": public, "via": "import"},
                }
            )
            audits.append((found.id, public))
            if competences_changed:
                replace_ids.append(found.id)
                links.extend(
                    {"incident_id": found.id, "competence_code": code, "district": new["district"]}
                    for code in row["required_competences"]
                )
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                {
                    **{name: bindparam(f"b_{name}") for name in _INCIDENT_UPDATABLE},
                    "version": table.c.version + 1,
                    "updated_at": now,
                }
            )
        )
        write_links = bulk_writer(session, IncidentCompetence, links)

        def update_incidents() -> None:
            session.connection().execute(stmt, params)
            if replace_ids:
                session.connection().execute(
                    delete(IncidentCompetence).where(
                        col(IncidentCompetence.incident_id).in_(replace_ids)
                    )
                )
                if write_links is not None:
                    write_links()

        writes = [
            bulk_writer(session, IncidentEvent, events),
            audit_writer(session, principal, now, "update", "incident", audits),
        ]
        return [update_incidents, *(call for call in writes if call is not None)]


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
