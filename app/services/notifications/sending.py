"""Sending: claim due rows under a lease, send them over SMTP, record each attempt."""

from __future__ import annotations

import logging
import random
import smtplib
import ssl
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.config import Settings, get_settings
from app.core.db import affected_rows, session_scope
from app.models.assignment import Assignment, AssignmentStatus
from app.models.manager import Manager
from app.models.notification import (
    Notification,
    NotificationStatus,
)
from app.services.notifications.queueing import COORDINATOR_KINDS, K, is_postgresql
from app.services.notifications.rendering import render

log = logging.getLogger("kokoma.notifications")

#: Mails that ask for an answer: pointless once the offer is no longer open.
_OFFER_KINDS = frozenset({K.offer.value, K.offer_reminder.value})


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


def claim_due(
    session: Session, now: datetime, limit: int, lease: float, settings: Settings
) -> list[MailClaim]:
    """Lease up to ``limit`` due notifications to this worker (the caller commits at once)."""
    n = Notification
    stmt = (
        select(col(n.id))
        .where(
            col(n.status) == NotificationStatus.pending.value,
            col(n.next_attempt_at) <= now,
            col(n.digest_id).is_(None),
            col(n.recipient).is_not(None),
            (col(n.locked_until).is_(None)) | (col(n.locked_until) <= now),
        )
        .order_by(col(n.next_attempt_at), col(n.id))
        .limit(limit)
    )
    if settings.coordinator_digest_minutes:
        stmt = stmt.where(col(n.kind).not_in(COORDINATOR_KINDS))
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt))
    if not ids:
        return []
    token = uuid.uuid4()
    session.execute(
        update(n)
        .where(col(n.id).in_(ids))
        .values(locked_until=now + timedelta(seconds=lease), lease_token=token)
    )
    rows = session.execute(
        select(
            col(n.id),
            col(n.kind),
            col(n.recipient),
            col(n.message_id),
            col(n.attempts),
            col(n.payload),
            col(Manager.display_name),
            col(Manager.email),
            col(Manager.notify_by_email),
            col(Assignment.status).label("assignment_status"),
        )
        .outerjoin(Manager, col(Manager.id) == col(n.manager_id))
        .outerjoin(Assignment, col(Assignment.id) == col(n.assignment_id))
        .where(col(n.id).in_(ids))
        .order_by(col(n.next_attempt_at), col(n.id))
    ).all()
    claims = []
    for r in rows:
        obsolete = None
        if r.kind in _OFFER_KINDS and r.assignment_status != AssignmentStatus.offered:
            obsolete = f"not sent: the offer is {r.assignment_status} meanwhile"
        elif r.notify_by_email is False:
            obsolete = "not sent: the manager turned e-mail off meanwhile"
        claims.append(
            MailClaim(
                notification_id=r.id,
                lease_token=token,
                kind=r.kind,
                # a manager's mail goes to the address they have now
                recipient=r.email if r.email is not None else r.recipient,
                message_id=r.message_id,
                attempts=r.attempts,
                payload=r.payload,
                display_name=r.display_name,
                obsolete=obsolete,
            )
        )
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
    delay = min(
        settings.mail_backoff_max_seconds, settings.mail_backoff_seconds * 2 ** (attempt - 1)
    )
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def record(
    session: Session,
    claim: MailClaim,
    error: str | None,
    now: datetime,
    settings: Settings,
    *,
    final: bool = False,
) -> bool:
    """Move the notification on after an attempt (``final``: an error not worth retrying);
    ``False`` when the lease was lost meanwhile."""
    attempt = claim.attempts + (0 if final else 1)
    values: dict[str, Any] = {
        "attempts": attempt,
        "locked_until": None,
        "lease_token": None,
        "updated_at": now,
        "recipient": claim.recipient,
    }
    if error is None:
        values.update(status=NotificationStatus.sent.value, sent_at=now)
    else:
        values.update(last_error=error)
        if final or attempt >= settings.mail_max_attempts:
            values.update(status=NotificationStatus.failed.value)
        else:
            values.update(
                next_attempt_at=now + timedelta(seconds=backoff_seconds(attempt, settings))
            )
    n = Notification
    result = session.execute(
        update(n)
        .where(col(n.id) == claim.notification_id, col(n.lease_token) == claim.lease_token)
        .values(**values)
    )
    kept = affected_rows(result) == 1
    if kept and claim.kind == K.coordinator_digest.value and "status" in values:
        session.execute(
            update(n)
            .where(col(n.digest_id) == claim.notification_id)
            .values(
                status=values["status"],
                sent_at=values.get("sent_at"),
                last_error=error,
                updated_at=now,
            )
        )
    if final:
        log.info(
            "mail dropped", extra={"notification_id": str(claim.notification_id), "reason": error}
        )
    elif error is not None:  # the reply code only: SMTP error texts may quote the address
        log.info(
            "mail failed",
            extra={
                "notification_id": str(claim.notification_id),
                "attempt": attempt,
                "code": error.split(" ", 1)[0],
            },
        )
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
