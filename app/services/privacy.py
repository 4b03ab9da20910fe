"""Data protection (GDPR Art. 5, 15, 17, 25, 30): erasure, retention, access logging, subject access.

What is personal, who sees it, where it is copied and how long it is kept is written down in
``PRIVACY.md``; this module implements the erasing and logging side of it.

* **Reporter erasure** (:func:`erase_reporter`): the reporter's name and contact are set to NULL on
  the incident and removed from every copy — stored idempotency responses, outbox (webhook)
  payloads — and literal occurrences of the erased values are redacted (``[erased]``) in the
  incident's free text (title, description, notes, timeline notes and data, assignment reasons and
  outcome). The incident, its timeline and statistics stay; the timeline gets a
  ``reporter_erased`` event naming the erased *fields* (never the values) and the actor.
* **Manager erasure** (:func:`erase_manager`, retired managers only): name and contact replaced by
  a stable pseudonym derived from the id, absence reasons removed, bound API keys revoked;
  assignments and statistics stay.
* **Retention** (:func:`run_retention_batch`): reporter data of incidents closed, withdrawn or
  referred before the cut-off is erased (``kokoma worker`` and ``kokoma retention run``); expired
  idempotency records are deleted.
* **Access logging** (:func:`log_access`): every read returning reporter name/contact or manager
  e-mail/phone leaves an audit entry of kind ``access`` — who, which record, when, which fields.
* **Subject access** (:func:`subject_access`): every record holding an e-mail address.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.config import get_settings
from app.core.db import WRITE_OPTION, get_engine, session_scope
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.problems import ProblemType
from app.core.security import SYSTEM_PRINCIPAL, Principal, forget_keys
from app.models.assignment import Assignment
from app.models.base import new_ordered_id
from app.models.incident import Incident, IncidentEvent, IncidentNote, IncidentStatus
from app.models.manager import Absence, Manager, ManagerStatus
from app.models.outbox import OutboxEvent
from app.models.privacy_schemas import (
    DataSubjectReport,
    SubjectApiKey,
    SubjectAssignment,
    SubjectIncident,
    SubjectManager,
)
from app.models.recommendation import RecommendationEvent
from app.models.system import ApiKey, AuditEvent, AuditKind, IdempotencyRecord, Role
from app.services import audit
from app.services.versioning import bump

#: What erased values are replaced with in free text.
REDACTED = "[erased]"
#: Shorter values are erased from their fields but not searched for in free text (too many false
#: hits: a reporter called "Li" must not turn every "li" into "[erased]").
MIN_REDACT_LENGTH = 3
#: Incidents in these statuses are subject to reporter retention.
RETENTION_STATUSES = (IncidentStatus.closed, IncidentStatus.withdrawn, IncidentStatus.referred)
#: Incidents erased per retention transaction (the worker job drains the backlog batch by batch).
RETENTION_BATCH = 200
#: Places a subject-access search does not look into (stated in its response).
NOT_SEARCHED = [
    "incident.title", "incident.description", "incident_note.text", "incident_event.note",
    "assignment.decline_reason", "assignment.withdraw_reason", "assignment.outcome",
]


# --- redaction of erased values in free text ---------------------------------------------------


class Redactor:
    """Replaces literal, case-insensitive occurrences of erased values (whole words) in text."""

    def __init__(self, values: Iterable[str | None]) -> None:
        kept = {v.strip() for v in values if v and len(v.strip()) >= MIN_REDACT_LENGTH}
        self.values = sorted(kept, key=len, reverse=True)
        parts = []
        for value in self.values:
            left = r"(?<!\w)" if re.match(r"\w", value[0]) else ""
            right = r"(?!\w)" if re.match(r"\w", value[-1]) else ""
            parts.append(left + re.escape(value) + right)
        self.pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.forms = frozenset(self._search_forms())

    def text(self, value: str | None) -> str | None:
        if value is None or self.pattern is None:
            return value
        return self.pattern.sub(REDACTED, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        return value

    def _search_forms(self) -> set[str]:
        """Lower-cased forms the values take in stored text (raw and JSON-escaped)."""
        forms: set[str] = set()
        for value in self.values:
            for variant in (value, value.lower()):
                forms.add(variant.lower())
                forms.add(json.dumps(variant)[1:-1].lower())
                forms.add(json.dumps(variant, ensure_ascii=False)[1:-1].lower())
        return forms


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Any, needle: str) -> Any:
    return func.lower(column).like(f"%{_escape_like(needle.lower())}%", escape="\\")


def _clip(value: str | None, length: int) -> str | None:
    return value if value is None or len(value) <= length else value[: length - 1] + "…"


# --- scrubbing of copies: idempotency responses, outbox payloads -------------------------------


@dataclass(frozen=True, slots=True)
class ScrubTarget:
    """One erased record: its id, the redactor of its values, and what to put into the personal
    keys of any JSON object carrying that id (``nested``: the keys sit in that sub-object, e.g.
    ``reporter`` inside an incident)."""

    record_id: uuid.UUID
    redactor: Redactor
    nulls: dict[str, Any] = field(default_factory=dict)
    nested: str | None = None


def _scrub_json(value: Any, targets: Sequence[ScrubTarget], hits: set[uuid.UUID]) -> Any:
    """Null the personal keys of objects that are the erased records, then redact free text;
    the ids of the targets that changed something are added to ``hits``."""
    if isinstance(value, list):
        return [_scrub_json(v, targets, hits) for v in value]
    if isinstance(value, dict):
        out = {k: _scrub_json(v, targets, hits) for k, v in value.items()}
        for target in targets:
            if str(out.get("id")) != str(target.record_id):
                continue
            holder = out.get(target.nested) if target.nested else out
            if isinstance(holder, dict):
                for key, replacement in target.nulls.items():
                    if key in holder and holder[key] != replacement:
                        holder[key] = replacement
                        hits.add(target.record_id)
        return out
    if isinstance(value, str):
        for target in targets:
            redacted = target.redactor.text(value)
            if redacted != value:
                hits.add(target.record_id)
                value = redacted
        return value
    return value


def _relevant(targets: Sequence[ScrubTarget], stored: str) -> list[ScrubTarget]:
    """The targets whose id or values occur in a stored text (a batch has many targets)."""
    text = stored.lower()
    return [
        t for t in targets
        if str(t.record_id) in text or any(form in text for form in t.redactor.forms)
    ]


def scrub_idempotency_records(
    session: Session, targets: Sequence[ScrubTarget]
) -> set[uuid.UUID]:
    """Rewrite stored responses that carry an erased record or value; returns the ids of the
    targets found in one.

    Candidates are records whose body mentions a target's id or one of its values; the body is
    scrubbed as JSON (the personal keys of the erased record set to null, values redacted in every
    string), or as text when it is not JSON. The record stays, so a retry still replays — the
    erased response.
    """
    hits: set[uuid.UUID] = set()
    if not targets:
        return hits
    needles = {str(t.record_id) for t in targets}
    for target in targets:
        needles |= target.redactor.forms
    records = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.response_body.is_not(None),  # type: ignore[union-attr]
            or_(*(_contains(IdempotencyRecord.response_body, n) for n in sorted(needles))),
        )
    ).all()
    for record in records:
        body = record.response_body or ""
        relevant = _relevant(targets, body)
        try:
            scrubbed = json.dumps(_scrub_json(json.loads(body), relevant, hits),
                                  ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            scrubbed = _scrub_json(body, relevant, hits)
        if scrubbed != body:
            record.response_body = scrubbed
            session.add(record)
    return hits


def scrub_outbox(session: Session, where: Any, targets: Sequence[ScrubTarget]) -> set[uuid.UUID]:
    """Scrub the outbox payloads selected by ``where`` (already delivered ones included)."""
    hits: set[uuid.UUID] = set()
    if not targets:
        return hits
    for event in session.scalars(select(OutboxEvent).where(where)).all():
        relevant = _relevant(targets, json.dumps(event.payload))
        scrubbed = _scrub_json(event.payload, relevant, hits)
        if scrubbed != event.payload:
            event.payload = scrubbed
            session.add(event)
    return hits


# --- reporter erasure ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReporterErasure:
    incident_id: uuid.UUID
    reference: str
    erased: bool
    fields: list[str]
    redacted_in: list[str]


def reporter_fields(name: str | None, contact: str | None) -> list[str]:
    """The reporter fields that hold a value (as access and erasure entries name them)."""
    return [f for f, v in (("reporter.contact", contact), ("reporter.name", name)) if v is not None]


def erase_reporter(
    session: Session, incident: Incident, principal: Principal, *, reason: str = "request"
) -> ReporterErasure:
    """Erase the reporter's name and contact of ``incident`` (locked by the caller) everywhere.

    Idempotent: an incident without reporter name and contact is left as it is. ``has_reporter``
    and ``anonymous`` stay (they are not personal): the API then shows
    ``reporter = {"name": null, "contact": null, "anonymous": …}``.
    """
    return erase_reporters(session, [incident], principal, reason=reason)[0]


def erase_reporters(
    session: Session, incidents: Sequence[Incident], principal: Principal, *, reason: str
) -> list[ReporterErasure]:
    """:func:`erase_reporter` for a batch: the copies (outbox, idempotency records) are scrubbed
    in one pass for all of them."""
    now = get_clock().now()
    work: list[tuple[Incident, list[str], list[str]]] = []
    targets: list[ScrubTarget] = []
    results: dict[uuid.UUID, ReporterErasure] = {}
    for incident in incidents:
        fields = reporter_fields(incident.reporter_name, incident.reporter_contact)
        if not fields:
            results[incident.id] = ReporterErasure(incident.id, incident.reference, False, [], [])
            continue
        # earlier values (the reporter was edited) are known while a stored response holds them
        earlier = _stored_reporter_values(session, incident.id)
        redactor = Redactor([incident.reporter_name, incident.reporter_contact, *earlier])
        incident.reporter_name = None
        incident.reporter_contact = None
        incident.reporter_erased_at = now
        work.append((incident, fields, _redact_incident_texts(session, incident, redactor)))
        targets.append(ScrubTarget(
            incident.id, redactor, nulls={"name": None, "contact": None}, nested="reporter"
        ))
    in_outbox: set[uuid.UUID] = set()
    in_responses: set[uuid.UUID] = set()
    if targets:
        in_outbox = scrub_outbox(
            session, _outbox_about_incidents([t.record_id for t in targets]), targets
        )
        in_responses = scrub_idempotency_records(session, targets)
    from app.services.incidents import record_event

    for incident, fields, redacted in work:
        if incident.id in in_outbox:
            redacted.append("webhook_outbox")
        if incident.id in in_responses:
            redacted.append("idempotency_records")
        bump(session, incident)
        record_event(session, incident, "reporter_erased", principal,
                     data={"fields": fields, "reason": reason, "redacted_in": redacted})
        audit.record(session, principal, "erase_reporter", "incident", incident.id,
                     [*fields, *redacted])
        results[incident.id] = ReporterErasure(incident.id, incident.reference, True, fields,
                                               redacted)
    session.flush()
    return [results[incident.id] for incident in incidents]


def _redact_incident_texts(session: Session, incident: Incident, redactor: Redactor) -> list[str]:
    """Redact the erased values in the incident's own free text; returns where they were."""
    redacted: list[str] = []
    title = _clip(redactor.text(incident.title), 200) or ""
    description = redactor.text(incident.description) or ""
    if title != incident.title:
        incident.title = title
        redacted.append("title")
    if description != incident.description:
        incident.description = description
        redacted.append("description")
    if _redact_rows(session, IncidentNote, IncidentNote.incident_id == incident.id, redactor,
                    {"text": None}):
        redacted.append("notes")
    if _redact_rows(session, IncidentEvent, IncidentEvent.incident_id == incident.id, redactor,
                    {"note": None, "data": None}):
        redacted.append("timeline")
    if _redact_rows(session, Assignment, Assignment.incident_id == incident.id, redactor,
                    {"decline_reason": 2000, "withdraw_reason": 2000, "outcome": 5000}):
        redacted.append("assignments")
    return redacted


def _stored_reporter_values(session: Session, incident_id: uuid.UUID) -> set[str]:
    """Reporter names and contacts of ``incident_id`` found in stored responses."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            reporter = value.get("reporter")
            if str(value.get("id")) == str(incident_id) and isinstance(reporter, dict):
                found.update(v for k in ("name", "contact")
                             if isinstance(v := reporter.get(k), str))
            for item in value.values():
                walk(item)

    bodies = session.scalars(
        select(IdempotencyRecord.response_body).where(
            _contains(IdempotencyRecord.response_body, str(incident_id))
        )
    )
    for body in bodies:
        try:
            walk(json.loads(body or ""))
        except ValueError:
            continue
    return found


def _redact_rows(
    session: Session, model: Any, where: Any, redactor: Redactor, columns: dict[str, int | None]
) -> int:
    """Redact the given text/JSON columns of the selected rows; returns how many changed."""
    if redactor.pattern is None:
        return 0
    changed = 0
    for row in session.scalars(select(model).where(where)).all():
        dirty = False
        for name, length in columns.items():
            value = getattr(row, name)
            new = redactor.json(value) if isinstance(value, dict | list) else redactor.text(value)
            if isinstance(new, str) and length is not None:
                new = _clip(new, length)
            if new != value:
                setattr(row, name, new)
                dirty = True
        if dirty:
            session.add(row)
            changed += 1
    return changed


def _outbox_about_incidents(ids: Sequence[uuid.UUID]) -> Any:
    """Outbox events whose payload is about one of these incidents (incident.* and assignment.*)."""
    wanted = [str(i) for i in ids]
    return or_(
        OutboxEvent.payload["incident"]["id"].as_string().in_(wanted),  # type: ignore[index]
        OutboxEvent.payload["assignment"]["incident_id"].as_string().in_(wanted),  # type: ignore[index]
    )


def erase_reporter_by_id(
    session: Session, incident_id: uuid.UUID, principal: Principal
) -> Incident:
    """The API's erasure: the incident (404 when unknown), erased and returned."""
    from app.repositories.incidents import IncidentRepository

    incident = IncidentRepository(session).get(incident_id, for_update=True)
    if incident is None:
        raise NotFound(f"No incident {incident_id}.")
    erase_reporter(session, incident, principal, reason="request")
    return incident


# --- retention -----------------------------------------------------------------------------------


def retention_cutoff(today: date, days: int | None = None) -> datetime:
    """The instant before which a closing makes reporter data due for erasure.

    An incident closed (withdrawn, referred) on local date *D* keeps its reporter data while
    ``today - D <= days`` and loses it from the local date ``D + days + 1`` on: the cut-off is
    the start of the local day ``today - days`` (``KOKOMA_TIMEZONE``), in UTC.
    """
    days = get_settings().reporter_retention_days if days is None else days
    local = datetime.combine(today - timedelta(days=days), time(0), tzinfo=get_clock().tz)
    return local.astimezone(UTC)


def retention_ends_on(status_changed_at: datetime, days: int | None = None) -> date:
    """The first local date on which retention erases an incident closed at that instant."""
    days = get_settings().reporter_retention_days if days is None else days
    return status_changed_at.astimezone(get_clock().tz).date() + timedelta(days=days + 1)


def _due(cutoff: datetime) -> Any:
    return select(Incident).where(
        Incident.status.in_([s.value for s in RETENTION_STATUSES]),  # type: ignore[attr-defined]
        Incident.status_changed_at < cutoff,
        or_(Incident.reporter_name.is_not(None), Incident.reporter_contact.is_not(None)),  # type: ignore[union-attr]
    )


def retention_due(session: Session, today: date | None = None) -> list[str]:
    """References of the incidents whose reporter data retention would erase now (dry run)."""
    cutoff = retention_cutoff(today or get_clock().today())
    stmt = _due(cutoff).with_only_columns(Incident.reference).order_by(Incident.reference)
    return list(session.scalars(stmt))


def run_retention_batch(
    session: Session, *, today: date | None = None, limit: int = RETENTION_BATCH
) -> list[str]:
    """Erase the reporter data of up to ``limit`` due incidents; returns their references.

    Safe with several workers: on PostgreSQL the rows are locked with SKIP LOCKED (another worker
    takes the next ones); on SQLite writers are serialised; erasure re-checks under the lock.
    """
    cutoff = retention_cutoff(today or get_clock().today())
    stmt = _due(cutoff).order_by(Incident.status_changed_at, Incident.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = list(session.scalars(stmt).all())
    results = erase_reporters(session, due, SYSTEM_PRINCIPAL, reason="retention")
    return [r.reference for r in results if r.erased]


def purge_expired_idempotency_records(session: Session, now: datetime | None = None) -> int:
    """Delete idempotency records past their TTL (they may hold copies of personal data)."""
    result = session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= (now or get_clock().now()))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    cutoff: datetime
    references: list[str]
    idempotency_purged: int
    dry_run: bool


def run_retention(*, dry_run: bool = False, today: date | None = None) -> RetentionReport:
    """``kokoma retention run``: erase everything due, batch by batch (or list it, dry run)."""
    today = today or get_clock().today()
    cutoff = retention_cutoff(today)
    if dry_run:
        with session_scope(write=False) as session:
            return RetentionReport(cutoff, retention_due(session, today), 0, True)
    references: list[str] = []
    while True:
        with session_scope() as session:
            erased = run_retention_batch(session, today=today)
        references.extend(erased)
        if len(erased) < RETENTION_BATCH:
            break
    with session_scope() as session:
        purged = purge_expired_idempotency_records(session)
    return RetentionReport(cutoff, references, purged, False)


def run_retention_once() -> int:
    """The ``kokoma worker`` job: one batch of erasures plus the idempotency purge."""
    with session_scope() as session:
        erased = run_retention_batch(session)
        purged = purge_expired_idempotency_records(session)
    return len(erased) + purged


# --- manager erasure -----------------------------------------------------------------------------


def manager_pseudonym(manager_id: uuid.UUID) -> tuple[str, str]:
    """The stable pseudonym of an erased manager: ``(display_name, email)``."""
    digest = hashlib.sha256(manager_id.bytes).hexdigest()[:8]
    return f"Former manager {digest}", f"erased-{manager_id}@invalid"


def _pseudonymise_actor_names(session: Session, names: Sequence[str], pseudonym: str) -> None:
    """Entries a person with the manager role made (signed in, so named by display name or
    e-mail at the time) carry the pseudonym instead: timelines and the audit trail."""
    wanted = sorted({n.strip().lower() for n in names if n and n.strip()})
    if not wanted:
        return
    for model, role, name in (
        (IncidentEvent, IncidentEvent.actor_role, IncidentEvent.actor_name),
        (RecommendationEvent, RecommendationEvent.actor_role, RecommendationEvent.actor_name),
        (AuditEvent, AuditEvent.principal_role, AuditEvent.principal_name),
    ):
        session.execute(
            update(model)
            .where(role == Role.manager.value, func.lower(name).in_(wanted))
            .values({name.key: pseudonym})
        )


def erase_manager(session: Session, manager_id: uuid.UUID, principal: Principal) -> Manager:
    """Replace a retired manager's name and contact by a pseudonym; idempotent.

    Kept: the id, status, districts, competences, assignments (and so every statistic). Removed:
    display name, e-mail, phone, absence reasons, the values wherever they were copied
    (idempotency responses, free text of the manager's assignments). API keys bound to the
    manager are revoked.
    """
    manager = session.scalars(
        select(Manager).where(Manager.id == manager_id).with_for_update()
    ).first()
    if manager is None:
        raise NotFound(f"No manager {manager_id}.")
    if manager.status != ManagerStatus.retired:
        raise Conflict(
            "Only retired managers can be erased; retire the manager first.", type_=ProblemType.NOT_RETIRED
        )
    if manager.erased_at is not None:
        return manager
    redactor = Redactor([manager.display_name, manager.email, manager.phone])
    own_names = [manager.display_name, manager.email]
    now = get_clock().now()
    display_name, email = manager_pseudonym(manager.id)
    manager.display_name, manager.email, manager.phone = display_name, email, None
    manager.erased_at = now
    fields = ["display_name", "email", "phone"]
    absences = session.execute(
        update(Absence)
        .where(Absence.manager_id == manager.id, Absence.reason.is_not(None))  # type: ignore[union-attr]
        .values(reason=None)
    )
    if absences.rowcount:  # type: ignore[attr-defined]
        fields.append("absences.reason")
    revoked = session.execute(
        update(ApiKey)
        .where(ApiKey.manager_id == manager.id, ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
        .values(revoked_at=now)
    )
    if revoked.rowcount:  # type: ignore[attr-defined]
        forget_keys(session)  # again after commit: no request re-caches a revoked key
    _redact_rows(session, Assignment, Assignment.manager_id == manager.id, redactor,
                 {"decline_reason": 2000, "withdraw_reason": 2000, "outcome": 5000})
    _pseudonymise_actor_names(session, own_names, display_name)
    target = ScrubTarget(
        manager.id, redactor,
        nulls={"display_name": display_name, "email": email, "phone": None},
    )
    scrub_idempotency_records(session, [target])
    scrub_outbox(
        session,
        OutboxEvent.payload["assignment"]["manager_id"].as_string() == str(manager.id),  # type: ignore[index]
        [target],
    )
    from app.services.notifications import forget_manager

    if forget_manager(session, manager.id, now, redactor.text):
        fields.append("notifications.recipient")
    bump(session, manager)
    audit.record(session, principal, "erase", "manager", manager.id, fields)
    session.flush()
    return manager


# --- access logging ------------------------------------------------------------------------------


_ACCESS = AuditKind.access.value
_ACCESS_INSERT = insert(AuditEvent.__table__)  # type: ignore[attr-defined]
_SQLITE_ACCESS_WRITER = threading.Lock()


def _own_write_transaction() -> Any:
    return get_engine().execution_options(**{WRITE_OPTION: True}).begin()


def log_access(
    session: Session,
    principal: Principal,
    resource: str,
    entries: Iterable[tuple[Any, Sequence[str]]],
    *,
    action: str = "read",
    separate: bool = False,
) -> int:
    """Record reads of personal data: one ``access`` audit entry per record ``(id, fields)``.

    Entries name the fields, never their values. They are inserted in one statement — in the
    caller's transaction when it may write (PostgreSQL, or a write session on SQLite), otherwise
    (a read session on SQLite, whose deferred transaction must not upgrade to a write lock) or
    with ``separate=True`` (streamed exports) in a short write transaction of their own.
    """
    now = get_clock().now()
    who = audit.principal_columns(principal)
    rows = [
        {
            "id": new_ordered_id(),
            "at": now,
            "kind": _ACCESS,
            **who,
            "action": action,
            "resource": resource,
            "resource_id": str(record_id),
            "fields": sorted(set(fields)),
        }
        for record_id, fields in entries
        if fields
    ]
    if not rows:
        return 0
    bind = session.get_bind()
    in_caller = not separate and (
        bind.dialect.name != "sqlite" or bind.get_execution_options().get(WRITE_OPTION, False)
    )
    # Core on the connection (no ORM execution bookkeeping): one multi-row INSERT.
    if in_caller:
        session.connection().execute(_ACCESS_INSERT, rows)
    elif bind.dialect.name == "sqlite":
        # This process's threads queue here, woken as soon as the writer before them commits,
        # instead of polling SQLite's single write lock with the busy handler's sleeps (up to
        # 100 ms each: the p99 of staff reads under load, bench/README.md).
        with _SQLITE_ACCESS_WRITER, _own_write_transaction() as own:
            own.execute(_ACCESS_INSERT, rows)
    else:
        with _own_write_transaction() as own:
            own.execute(_ACCESS_INSERT, rows)
    return len(rows)


def log_reporter_access(
    session: Session,
    principal: Principal,
    incidents: Iterable[tuple[Any, str | None, str | None]],
    *,
    action: str = "read",
    separate: bool = False,
) -> int:
    """Access entries for incidents ``(id, reporter_name, reporter_contact)`` returned with
    their reporter data (those without a name or contact are skipped)."""
    return log_access(
        session, principal, "incident",
        [(i, reporter_fields(name, contact)) for i, name, contact in incidents],
        action=action, separate=separate,
    )


def manager_contact_fields(email: str | None, phone: str | None) -> list[str]:
    return [f for f, v in (("email", email), ("phone", phone)) if v is not None]


# --- subject access ------------------------------------------------------------------------------


def _normalise_email(email: str) -> str:
    value = email.strip()
    if "@" not in value or len(value) > 320 or any(c.isspace() for c in value):
        raise Unprocessable(
            "email must be an e-mail address.",
            errors=[{"loc": ["query", "email"], "msg": "not an e-mail address",
                     "type": "value_error"}],
        )
    return value


def subject_access(session: Session, email: str, principal: Principal) -> DataSubjectReport:
    """Every record holding ``email`` (reporter contact or manager e-mail, case-insensitive).

    The answer is itself personal data: each returned record is logged as an ``access`` entry
    (action ``subject_access``).
    """
    from app.services.managers import ManagerService

    address = _normalise_email(email)
    wanted = address.lower()
    incidents = session.scalars(
        select(Incident)
        .where(func.lower(Incident.reporter_contact) == wanted)
        .order_by(Incident.reference)
    ).all()
    managers = session.scalars(
        select(Manager).where(func.lower(Manager.email) == wanted).order_by(Manager.id)
    ).all()

    subject_incidents = [
        SubjectIncident(
            id=i.id,
            reference=i.reference,
            status=IncidentStatus(i.status),
            category=i.category,  # type: ignore[arg-type]
            district=i.district,
            organisation_id=i.organisation_id,
            reported_at=i.reported_at,
            status_changed_at=i.status_changed_at,
            reporter={"name": i.reporter_name, "contact": i.reporter_contact,  # type: ignore[arg-type]
                      "anonymous": i.reporter_anonymous},
            retention_ends_on=(
                retention_ends_on(i.status_changed_at).isoformat()
                if i.status in RETENTION_STATUSES else None
            ),
        )
        for i in incidents
    ]
    subject_managers = []
    views = ManagerService(session).to_views(list(managers), principal) if managers else []
    for manager, view in zip(managers, views, strict=True):
        absences = session.scalars(
            select(Absence).where(Absence.manager_id == manager.id).order_by(Absence.starts_on)
        ).all()
        assignments = session.execute(
            select(Assignment, Incident.reference)
            .join(Incident, Incident.id == Assignment.incident_id)
            .where(Assignment.manager_id == manager.id)
            .order_by(Assignment.offered_at, Assignment.id)
        ).all()
        keys = session.scalars(
            select(ApiKey).where(ApiKey.manager_id == manager.id).order_by(ApiKey.created_at)
        ).all()
        subject_managers.append(
            SubjectManager(
                manager=view,  # type: ignore[arg-type]
                absences=[
                    {"id": a.id, "starts_on": a.starts_on, "ends_on": a.ends_on,  # type: ignore[misc]
                     "reason": a.reason}
                    for a in absences
                ],
                assignments=[
                    SubjectAssignment(
                        id=a.id, incident_id=a.incident_id, incident_reference=reference,
                        role=a.role, status=a.status, offered_at=a.offered_at,
                        responded_at=a.responded_at, ended_at=a.ended_at,
                    )
                    for a, reference in assignments
                ],
                api_keys=[
                    SubjectApiKey(id=k.id, name=k.name, role=k.role, created_at=k.created_at,
                                  revoked_at=k.revoked_at)
                    for k in keys
                ],
            )
        )
    log_reporter_access(
        session, principal,
        [(i.id, i.reporter_name, i.reporter_contact) for i in incidents],
        action="subject_access",
    )
    log_access(
        session, principal, "manager",
        [(m.id, ["display_name", *manager_contact_fields(m.email, m.phone)]) for m in managers],
        action="subject_access",
    )
    return DataSubjectReport(
        email=address,
        generated_at=get_clock().now(),
        incidents=subject_incidents,
        managers=subject_managers,
        not_searched=NOT_SEARCHED,
    )

