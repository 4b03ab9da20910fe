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

Modules: ``queueing`` (rows written with the change), ``timers`` (reminders, triage deadlines,
digests), ``rendering`` (labels and templates), ``sending`` (claim, SMTP, record), ``record``
(the API over the record, a manager's erasure from it).
"""

from app.services.notifications.queueing import (
    incident_facts,
    offer_made,
    offer_withdrawn,
    offers_made,
    tell_coordinators,
)
from app.services.notifications.record import (
    NotificationFilter,
    NotificationService,
    forget_manager,
)
from app.services.notifications.rendering import LABELS, RenderedMail, format_time, render
from app.services.notifications.sending import (
    MailClaim,
    SmtpSession,
    backoff_seconds,
    build_message,
    claim_due,
    deliver_mail,
    lease_seconds,
    record,
)
from app.services.notifications.timers import (
    collect_digests,
    queue_reminders,
    queue_triage_overdue,
)

__all__ = [
    "LABELS",
    "MailClaim",
    "NotificationFilter",
    "NotificationService",
    "RenderedMail",
    "SmtpSession",
    "backoff_seconds",
    "build_message",
    "claim_due",
    "collect_digests",
    "deliver_mail",
    "forget_manager",
    "format_time",
    "incident_facts",
    "lease_seconds",
    "offer_made",
    "offer_withdrawn",
    "offers_made",
    "queue_reminders",
    "queue_triage_overdue",
    "record",
    "render",
    "tell_coordinators",
]
