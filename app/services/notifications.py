"""E-mail notifications: written with the change, sent by ``kokoma worker`` over SMTP.

Flow:

1. **Queue** — the dispatch rules call :func:`offer_made`, :func:`offer_withdrawn` and
   :func:`tell_coordinators` in the transaction of the change: a change that rolls back leaves no
   row, one that commits leaves exactly its rows. Worker timers add reminders
   (:func:`queue_reminders`) and triage deadlines (:func:`queue_triage_overdue`); a unique
   ``dedupe_key`` makes each fire once however many workers run them at the same time. With mail
   not configured (``KOKOMA_SMTP_HOST`` or ``KOKOMA_MAIL_FROM`` unset) nothing is queued at all:
   no rows pile up that a later configuration would suddenly send.
2. **Digest** — with ``KOKOMA_COORDINATOR_DIGEST_MINUTES`` set, a coordinator's pending events are
   collected (:func:`collect_digests`) into one digest row once the oldest is that old; the events
   then follow the digest's status.
3. **Claim** — due rows are leased in a short transaction (``SELECT … FOR UPDATE SKIP LOCKED`` on
   PostgreSQL; SQLite serialises writers): ``locked_until`` + ``lease_token``. A worker that dies
   mid-send loses nothing — the lease runs out and another worker sends again, with the same
   ``Message-ID`` (at least once; a receiving system can drop the duplicate by it).
4. **Send and record** — one SMTP session per round (``smtplib``: the worker is synchronous);
   success ends the row (``sent``), a failure schedules the next try after ``base · 2^(n-1)``
   seconds (capped, equal jitter) until ``KOKOMA_MAIL_MAX_ATTEMPTS``, then ``failed``. The update
   is guarded by the lease token.

Mails carry the incident's reference, district, category and escalation level, the role and the
expiry — never reporter data, the description or notes (they may name people).
"""

from __future__ import annotations

import logging
import random
import smtplib
import ssl
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from app.core.clock import get_clock
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.pagination import PageParams, keyset, page_slice
from app.models.assignment import Assignment, AssignmentStatus
from app.models.incident import Incident, IncidentStatus
from app.models.manager import Manager
from app.models.notification import (
    COORDINATOR_EVENT_KINDS,
    Notification,
    NotificationKind,
    NotificationPublic,
    NotificationStatus,
)
from app.models.reference import District

log = logging.getLogger("kokoma.notifications")

K = NotificationKind
_COORDINATOR_KINDS = sorted(k.value for k in COORDINATOR_EVENT_KINDS)
#: PostgreSQL advisory lock of the digest collector ("kmdig").
_DIGEST_LOCK = 0x6B6D646967
#: Mails that ask for an answer: pointless once the offer is no longer open.
_OFFER_KINDS = frozenset({K.offer.value, K.offer_reminder.value})


# --- labels ---------------------------------------------------------------------------------

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "de": {
        "category": {
            "right_wing_extremism": "Rechtsextremismus",
            "racism_discrimination": "Rassismus und Diskriminierung",
            "antisemitism": "Antisemitismus",
            "hate_speech": "Hassrede",
            "threat_to_civil_society": "Bedrohung der Zivilgesellschaft",
            "neighbourhood_dispute": "Nachbarschaftskonflikt",
            "public_space": "Öffentlicher Raum",
            "youth_conflict": "Jugendkonflikt",
            "other": "Sonstiges",
        },
        "role": {"lead": "Leitung", "co": "Co-Mediation im Tandem"},
        "weekday": dict(zip("0123456", ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
                            strict=True)),
    },
    "en": {
        "category": {
            "right_wing_extremism": "Right-wing extremism",
            "racism_discrimination": "Racism and discrimination",
            "antisemitism": "Antisemitism",
            "hate_speech": "Hate speech",
            "threat_to_civil_society": "Threat to civil society",
            "neighbourhood_dispute": "Neighbourhood dispute",
            "public_space": "Public space",
            "youth_conflict": "Youth conflict",
            "other": "Other",
        },
        "role": {"lead": "lead", "co": "co-mediator in a tandem"},
        "weekday": dict(zip("0123456", ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
                            strict=True)),
    },
}
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_time(value: str | datetime | None, settings: Settings) -> str:
    """An instant as people in ``KOKOMA_TIMEZONE`` read it, in the mail language."""
    if value is None:
        return ""
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = instant.astimezone(settings.tz)
    weekday = LABELS[settings.mail_language]["weekday"][str(local.weekday())]
    if settings.mail_language == "de":
        return f"{weekday}, {local:%d.%m.%Y}, {local:%H:%M} Uhr"
    return (f"{weekday} {local.day} {_EN_MONTHS[local.month - 1]} {local.year}, "
            f"{local:%H:%M} ({settings.timezone})")


# --- queueing (in the caller's transaction) --------------------------------------------------


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _domain(settings: Settings) -> str:
    sender = settings.mail_from or ""
    domain = sender.rsplit("@", 1)[-1].strip(" >") if "@" in sender else ""
    return domain or "kokoma.invalid"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _district_names(session: Session, codes: Iterable[str]) -> dict[str, str]:
    return dict(session.execute(  # type: ignore[arg-type]
        select(District.code, District.name).where(District.code.in_(set(codes)))  # type: ignore[attr-defined]
    ).all())


def incident_facts(
    session: Session, incident: Incident, names: dict[str, str] | None = None
) -> dict[str, Any]:
    """What a mail may say about an incident: never reporter, title, description or notes."""
    if names is None:
        names = _district_names(session, [incident.district])
    name = names.get(incident.district)
    return {
        "incident_id": str(incident.id),
        "reference": incident.reference,
        "district": incident.district,
        "district_name": name or incident.district,
        "category": str(incident.category),
        "escalation_level": incident.escalation_level,
    }


def _row(
    kind: NotificationKind,
    recipient: str,
    payload: dict[str, Any],
    now: datetime,
    settings: Settings,
    *,
    manager_id: uuid.UUID | None = None,
    incident_id: uuid.UUID | None = None,
    assignment_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    notification_id = uuid.uuid4()
    return {
        "id": notification_id,
        "kind": kind.value,
        "recipient": recipient,
        "manager_id": manager_id,
        "incident_id": incident_id,
        "assignment_id": assignment_id,
        "payload": payload,
        "message_id": f"<{notification_id.hex}@{_domain(settings)}>",
        "dedupe_key": dedupe_key,
        "digest_id": None,
        "status": NotificationStatus.pending.value,
        "attempts": 0,
        "last_error": None,
        "next_attempt_at": now,
        "locked_until": None,
        "lease_token": None,
        "created_at": now,
        "updated_at": now,
        "sent_at": None,
    }


def _insert(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert, skipping rows whose ``dedupe_key`` exists (a timer that fired already)."""
    if not rows:
        return 0
    insert = pg_insert if _is_pg(session) else sqlite_insert
    table = Notification.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"]), rows
    )
    count = result.rowcount
    return len(rows) if count is None or count < 0 else int(count)


def _recipients(session: Session, manager_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The addresses of the managers who want mail (not erased)."""
    ids = list(set(manager_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Manager.id, Manager.email).where(
            Manager.id.in_(ids),  # type: ignore[attr-defined]
            Manager.notify_by_email.is_(True),  # type: ignore[attr-defined]
            Manager.erased_at.is_(None),  # type: ignore[union-attr]
        )
    ).all()
    return {row.id: row.email for row in rows}


def _get(assignment: Any, name: str) -> Any:
    return assignment[name] if isinstance(assignment, dict) else getattr(assignment, name)


def offers_made(
    session: Session, assignments: Sequence[Any], incidents: dict[uuid.UUID, Incident]
) -> int:
    """Queue the offer mail for each new offer (ORM objects or the batch's row dicts)."""
    settings = get_settings()
    if not settings.mail_enabled or not assignments:
        return 0
    recipients = _recipients(session, (_get(a, "manager_id") for a in assignments))
    if not recipients:
        return 0
    now = get_clock().now()
    names = _district_names(session, (i.district for i in incidents.values()))
    facts: dict[uuid.UUID, dict[str, Any]] = {}
    rows = []
    for assignment in assignments:
        address = recipients.get(_get(assignment, "manager_id"))
        if address is None:
            continue
        incident = incidents[_get(assignment, "incident_id")]
        if incident.id not in facts:
            facts[incident.id] = incident_facts(session, incident, names)
        rows.append(_row(
            K.offer, address,
            {**facts[incident.id], "assignment_id": str(_get(assignment, "id")),
             "role": str(_get(assignment, "role")),
             "expires_at": _iso(_get(assignment, "expires_at"))},
            now, settings,
            manager_id=_get(assignment, "manager_id"), incident_id=incident.id,
            assignment_id=_get(assignment, "id"),
        ))
    return _insert(session, rows)


def offer_made(session: Session, assignment: Assignment, incident: Incident) -> int:
    return offers_made(session, [assignment], {incident.id: incident})


def offer_withdrawn(session: Session, assignment: Assignment, was_offered: bool) -> int:
    """Tell the manager an open assignment of theirs was withdrawn (offer or accepted)."""
    settings = get_settings()
    if not settings.mail_enabled:
        return 0
    address = _recipients(session, [assignment.manager_id]).get(assignment.manager_id)
    incident = session.get(Incident, assignment.incident_id)
    if address is None or incident is None:
        return 0
    payload = {**incident_facts(session, incident), "assignment_id": str(assignment.id),
               "role": str(assignment.role), "was_offered": was_offered}
    return _insert(session, [_row(
        K.offer_withdrawn, address, payload, get_clock().now(), settings,
        manager_id=assignment.manager_id, incident_id=incident.id, assignment_id=assignment.id,
    )])


def tell_coordinators(
    session: Session,
    kind: NotificationKind,
    incident: Incident,
    *,
    role: str | None = None,
    dedupe: str | None = None,
) -> int:
    """One row per address in ``KOKOMA_COORDINATOR_EMAILS`` (none configured → nothing)."""
    settings = get_settings()
    addresses = settings.coordinator_addresses
    if not settings.mail_enabled or not addresses:
        return 0
    now = get_clock().now()
    payload = {**incident_facts(session, incident), "role": role,
               "reported_at": _iso(incident.reported_at)}
    return _insert(session, [
        _row(kind, address, payload, now, settings, incident_id=incident.id,
             dedupe_key=None if dedupe is None else f"{dedupe}:{address}"[:200])
        for address in addresses
    ])


# --- timers (worker jobs) --------------------------------------------------------------------


def queue_reminders(limit: int = 500) -> int:
    """Remind the manager of an offer still open ``KOKOMA_OFFER_REMINDER_HOURS`` before it
    expires — once (``dedupe_key``), and only for offers that ran longer than that."""
    settings = get_settings()
    hours = settings.offer_reminder_hours
    if not settings.mail_enabled or hours <= 0:
        return 0
    now = get_clock().now()
    lead = timedelta(hours=hours)
    with session_scope() as session:
        reminded = select(Notification.id).where(
            Notification.assignment_id == Assignment.id,
            Notification.kind == K.offer_reminder.value,
        )
        stmt = (
            select(Assignment.id, Assignment.incident_id, Assignment.manager_id, Assignment.role,
                   Assignment.offered_at, Assignment.expires_at)
            .join(Manager, Manager.id == Assignment.manager_id)
            .where(
                Assignment.status == AssignmentStatus.offered,
                Manager.notify_by_email.is_(True),  # type: ignore[attr-defined]
                Manager.erased_at.is_(None),  # type: ignore[union-attr]
                Assignment.expires_at > now,
                Assignment.expires_at <= now + lead,
                ~reminded.exists(),
            )
            .order_by(Assignment.expires_at, Assignment.id)
            .limit(limit)
        )
        due = [a for a in session.execute(stmt).all() if a.expires_at - a.offered_at > lead]
        if not due:
            return 0
        recipients = _recipients(session, (a.manager_id for a in due))
        incidents = {i.id: i for i in session.scalars(
            select(Incident).where(Incident.id.in_({a.incident_id for a in due}))  # type: ignore[attr-defined]
        )}
        rows = [
            _row(K.offer_reminder, recipients[a.manager_id],
                 {**incident_facts(session, incidents[a.incident_id]),
                  "assignment_id": str(a.id), "role": str(a.role),
                  "expires_at": _iso(a.expires_at)},
                 now, settings, manager_id=a.manager_id, incident_id=a.incident_id,
                 assignment_id=a.id, dedupe_key=f"offer_reminder:{a.id}")
            for a in due if a.manager_id in recipients
        ]
        _insert(session, rows)
        return len(rows)


def queue_triage_overdue(limit: int = 200) -> int:
    """Tell the coordinators of incidents still ``reported`` ``KOKOMA_TRIAGE_SLA_HOURS`` after
    they came in (``reported_at``) — once per incident."""
    settings = get_settings()
    if not settings.mail_enabled or not settings.coordinator_addresses:
        return 0
    now = get_clock().now()
    cutoff = now - timedelta(hours=settings.triage_sla_hours)
    with session_scope() as session:
        told = select(Notification.id).where(
            Notification.incident_id == Incident.id,
            Notification.kind == K.triage_overdue.value,
        )
        incidents = list(session.scalars(
            select(Incident)
            .where(Incident.status == IncidentStatus.reported, Incident.reported_at <= cutoff,
                   ~told.exists())
            .order_by(Incident.reported_at, Incident.id)
            .limit(limit)
        ))
        for incident in incidents:
            tell_coordinators(session, K.triage_overdue, incident,
                              dedupe=f"triage_overdue:{incident.id}")
        return len(incidents)


def collect_digests() -> int:
    """Bundle each coordinator's pending events into one digest once the oldest waited
    ``KOKOMA_COORDINATOR_DIGEST_MINUTES``; returns how many digests were made."""
    settings = get_settings()
    minutes = settings.coordinator_digest_minutes
    if not settings.mail_enabled or not minutes:
        return 0
    now = get_clock().now()
    n = Notification
    with session_scope() as session:
        if _is_pg(session) and not session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _DIGEST_LOCK}
        ):
            return 0  # another worker is collecting: one digest per coordinator and period
        stmt = (
            select(n.id, n.kind, n.recipient, n.payload, n.created_at)
            .where(n.status == NotificationStatus.pending.value,
                   n.kind.in_(_COORDINATOR_KINDS),  # type: ignore[attr-defined]
                   n.digest_id.is_(None),  # type: ignore[union-attr]
                   n.recipient.is_not(None))  # type: ignore[union-attr]
            .order_by(n.created_at, n.id)
            .limit(2000)
        )
        if _is_pg(session):
            stmt = stmt.with_for_update(skip_locked=True)
        by_recipient: dict[str, list[Any]] = defaultdict(list)
        for row in session.execute(stmt):
            by_recipient[row.recipient].append(row)
        made = 0
        for recipient, rows in by_recipient.items():
            if rows[0].created_at > now - timedelta(minutes=minutes):
                continue
            digest = _row(
                K.coordinator_digest, recipient,
                {"items": [{"kind": r.kind, **r.payload} for r in rows]}, now, settings,
            )
            _insert(session, [digest])
            session.execute(
                update(n).where(n.id.in_([r.id for r in rows]))  # type: ignore[attr-defined]
                .values(digest_id=digest["id"], updated_at=now)
            )
            made += 1
        return made


# --- rendering ---------------------------------------------------------------------------------

_env = Environment(
    loader=PackageLoader("app", "templates/mail"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _links(payload: dict[str, Any], settings: Settings) -> dict[str, str | None]:
    base = (settings.public_url or "").rstrip("/")
    assignment = payload.get("assignment_id")
    incident = payload.get("incident_id")
    return {
        "assignment_url": f"{base}/assignments/{assignment}" if base and assignment else None,
        "accept_url": (f"{base}/assignments/{assignment}?answer=accept"
                       if base and assignment else None),
        "decline_url": (f"{base}/assignments/{assignment}?answer=decline"
                        if base and assignment else None),
        "incident_url": f"{base}/incidents/{incident}" if base and incident else None,
    }


def _item(payload: dict[str, Any], settings: Settings) -> dict[str, Any]:
    labels = LABELS[settings.mail_language]
    role = payload.get("role")
    return {
        **payload,
        "category_label": labels["category"].get(payload.get("category", ""),
                                                 payload.get("category", "")),
        "role_label": labels["role"].get(role, role) if role else None,
        "expires_local": format_time(payload.get("expires_at"), settings),
        "reported_local": format_time(payload.get("reported_at"), settings),
        **_links(payload, settings),
    }


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def render(kind: str, payload: dict[str, Any], settings: Settings,
           display_name: str | None = None) -> RenderedMail:
    """Subject, plain text and HTML of a notification, from the templates of the language."""
    lang = settings.mail_language
    context: dict[str, Any] = {
        "item": _item({**payload, "kind": kind}, settings),
        "items": [_item(i, settings) for i in payload.get("items", [])],
        "name": display_name,
        "sla_hours": f"{settings.triage_sla_hours:g}",
        "reminder_hours": f"{settings.offer_reminder_hours:g}",
        "public_url": settings.public_url,
    }
    text_template = _env.get_template(f"{lang}/{kind}.txt")
    subject = " ".join(
        "".join(text_template.blocks["subject"](text_template.new_context(context))).split()
    )
    context["subject"] = subject
    return RenderedMail(
        subject=subject,
        text=text_template.render(context),
        html=_env.get_template(f"{lang}/{kind}.html").render(context),
    )


# --- claim, send, record ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailClaim:
    notification_id: uuid.UUID
    lease_token: uuid.UUID
    kind: str
    recipient: str
    message_id: str
    attempts: int
    payload: dict[str, Any]
    display_name: str | None
    #: Why the mail is no longer worth sending (an offer answered, expired or withdrawn since).
    obsolete: str | None = None


def lease_seconds(settings: Settings) -> float:
    return max(60.0, 6 * settings.smtp_timeout_seconds)


def claim_due(session: Session, now: datetime, limit: int, lease: float,
              settings: Settings) -> list[MailClaim]:
    """Lease up to ``limit`` due notifications to this worker (the caller commits at once)."""
    n = Notification
    stmt = (
        select(n.id)
        .where(
            n.status == NotificationStatus.pending.value,
            n.next_attempt_at <= now,
            n.digest_id.is_(None),  # type: ignore[union-attr]
            n.recipient.is_not(None),  # type: ignore[union-attr]
            (n.locked_until.is_(None)) | (n.locked_until <= now),  # type: ignore[union-attr, operator]
        )
        .order_by(n.next_attempt_at, n.id)
        .limit(limit)
    )
    if settings.coordinator_digest_minutes:
        stmt = stmt.where(n.kind.not_in(_COORDINATOR_KINDS))  # type: ignore[attr-defined]
    if _is_pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    token = uuid.uuid4()
    session.execute(
        update(n).where(n.id.in_(ids))  # type: ignore[attr-defined]
        .values(locked_until=now + timedelta(seconds=lease), lease_token=token)
    )
    rows = session.execute(
        select(n.id, n.kind, n.recipient, n.message_id, n.attempts, n.payload,
               Manager.display_name, Manager.email, Manager.notify_by_email,
               Assignment.status.label("assignment_status"))
        .outerjoin(Manager, Manager.id == n.manager_id)
        .outerjoin(Assignment, Assignment.id == n.assignment_id)
        .where(n.id.in_(ids))  # type: ignore[attr-defined]
        .order_by(n.next_attempt_at, n.id)
    ).all()
    claims = []
    for r in rows:
        obsolete = None
        if r.kind in _OFFER_KINDS and r.assignment_status != AssignmentStatus.offered:
            obsolete = f"not sent: the offer is {r.assignment_status} meanwhile"
        elif r.notify_by_email is False:
            obsolete = "not sent: the manager turned e-mail off meanwhile"
        claims.append(MailClaim(
            notification_id=r.id, lease_token=token, kind=r.kind,
            # a manager's mail goes to the address they have now
            recipient=r.email if r.email is not None else r.recipient,
            message_id=r.message_id, attempts=r.attempts, payload=r.payload,
            display_name=r.display_name, obsolete=obsolete,
        ))
    return claims


def build_message(claim: MailClaim, settings: Settings, now: datetime) -> EmailMessage:
    mail = render(claim.kind, claim.payload, settings, claim.display_name)
    message = EmailMessage()
    message["Subject"] = mail.subject
    message["From"] = settings.mail_from
    message["To"] = claim.recipient
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = claim.message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Kokoma-Notification"] = claim.kind
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class SmtpSession:
    """One SMTP connection for a round of mails, opened on first use, reopened after an error."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        smtp = smtplib.SMTP(s.smtp_host or "", s.smtp_port, timeout=s.smtp_timeout_seconds)
        try:
            smtp.ehlo()
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                smtp.login(s.smtp_username, password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: EmailMessage, recipient: str) -> str | None:
        """Send one message; the error text on failure (never raises for SMTP/network errors)."""
        try:
            if self.smtp is None:
                self.smtp = self._open()
            refused = self.smtp.send_message(
                message, from_addr=self.settings.mail_from, to_addrs=[recipient]
            )
            if refused:
                code, text = refused[recipient]
                return f"{code} {text.decode('utf-8', 'replace')}"[:500]
            return None
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            code, text = next(iter(exc.recipients.values()))
            return f"{code} {text.decode('utf-8', 'replace')}"[:500]
        except smtplib.SMTPResponseException as exc:
            self.close()
            error = exc.smtp_error
            text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            return f"{exc.smtp_code} {text}"[:500]
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            return f"{type(exc).__name__}: {exc}"[:500]

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()
            self.smtp = None


def backoff_seconds(attempt: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based): exponential, capped, equal jitter."""
    delay = min(settings.mail_backoff_max_seconds,
                settings.mail_backoff_seconds * 2 ** (attempt - 1))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def record(session: Session, claim: MailClaim, error: str | None, now: datetime,
           settings: Settings, *, final: bool = False) -> bool:
    """Move the notification on after an attempt (``final``: an error not worth retrying);
    ``False`` when the lease was lost meanwhile."""
    attempt = claim.attempts + (0 if final else 1)
    values: dict[str, Any] = {"attempts": attempt, "locked_until": None, "lease_token": None,
                              "updated_at": now, "recipient": claim.recipient}
    if error is None:
        values.update(status=NotificationStatus.sent.value, sent_at=now)
    else:
        values.update(last_error=error)
        if final or attempt >= settings.mail_max_attempts:
            values.update(status=NotificationStatus.failed.value)
        else:
            values.update(next_attempt_at=now + timedelta(
                seconds=backoff_seconds(attempt, settings)))
    n = Notification
    result = session.execute(
        update(n).where(n.id == claim.notification_id, n.lease_token == claim.lease_token)
        .values(**values)
    )
    kept = result.rowcount == 1  # type: ignore[attr-defined]
    if kept and claim.kind == K.coordinator_digest.value and "status" in values:
        session.execute(
            update(n).where(n.digest_id == claim.notification_id).values(
                status=values["status"], sent_at=values.get("sent_at"),
                last_error=error, updated_at=now,
            )
        )
    if final:
        log.info("mail dropped", extra={"notification_id": str(claim.notification_id),
                                        "reason": error})
    elif error is not None:  # the reply code only: SMTP error texts may quote the address
        log.info("mail failed", extra={"notification_id": str(claim.notification_id),
                                       "attempt": attempt, "code": error.split(" ", 1)[0]})
    return kept


def deliver_mail(
    *,
    limit: int = 50,
    on_claimed: Callable[[Sequence[MailClaim]], None] | None = None,
) -> int:
    """Claim due notifications, send them over one SMTP session, record each (a worker job)."""
    settings = get_settings()
    if not settings.mail_enabled:
        return 0
    clock = get_clock()
    with session_scope() as session:
        claims = claim_due(session, clock.now(), limit, lease_seconds(settings), settings)
    if not claims:
        return 0
    if on_claimed is not None:
        on_claimed(claims)  # tests: simulate a crash between claim and sending
    smtp = SmtpSession(settings)
    try:
        for claim in claims:
            if claim.obsolete is not None:
                with session_scope() as session:
                    record(session, claim, claim.obsolete, clock.now(), settings, final=True)
                continue
            try:
                message = build_message(claim, settings, clock.now())
            except Exception as exc:  # a template error must not stop the other mails
                log.exception("mail could not be rendered")
                error: str | None = f"render: {type(exc).__name__}: {exc}"[:500]
            else:
                error = smtp.send(message, claim.recipient)
            with session_scope() as session:
                record(session, claim, error, clock.now(), settings)
    finally:
        smtp.close()
    return len(claims)


# --- the record (API) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    manager_id: uuid.UUID | None = None
    incident_id: uuid.UUID | None = None
    status: NotificationStatus | None = None


class NotificationService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(self, flt: NotificationFilter, params: PageParams
             ) -> tuple[list[NotificationPublic], str | None]:
        n = Notification
        stmt = select(n)
        if flt.manager_id is not None:
            stmt = stmt.where(n.manager_id == flt.manager_id)
        if flt.incident_id is not None:
            stmt = stmt.where(n.incident_id == flt.incident_id)
        if flt.status is not None:
            stmt = stmt.where(n.status == flt.status.value)
        stmt = keyset(stmt, [n.created_at, n.id], params, descending=True)  # type: ignore[list-item]
        rows, cursor = page_slice(self.session.scalars(stmt).all(), params.limit,
                                  lambda r: [r.created_at, r.id])
        return [
            NotificationPublic.model_validate({
                **r.model_dump(),
                "next_attempt_at": (r.next_attempt_at
                                    if r.status == NotificationStatus.pending else None),
            })
            for r in rows
        ], cursor


def forget_manager(
    session: Session, manager_id: uuid.UUID, now: datetime,
    redact: Callable[[str | None], str | None] | None = None,
) -> int:
    """Manager erasure: their address leaves the record (also from SMTP error texts, through
    ``redact``); what was still pending is not sent."""
    n = Notification
    if redact is not None:
        for row_id, error in session.execute(
            select(n.id, n.last_error).where(n.manager_id == manager_id,
                                            n.last_error.is_not(None))  # type: ignore[union-attr]
        ).all():
            if redact(error) != error:
                session.execute(update(n).where(n.id == row_id).values(last_error=redact(error)))
    session.execute(
        update(n).where(n.manager_id == manager_id, n.status == NotificationStatus.pending.value)
        .values(status=NotificationStatus.failed.value, last_error="recipient erased",
                locked_until=None, lease_token=None, updated_at=now)
    )
    result = session.execute(
        update(n).where(n.manager_id == manager_id, n.recipient.is_not(None))  # type: ignore[union-attr]
        .values(recipient=None, updated_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
