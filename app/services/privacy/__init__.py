"""Data protection (GDPR Art. 5, 15, 17, 25, 30): erasure, retention, access logging, subject access.

What is personal, who sees it, where it is copied and how long it is kept is written down in
``PRIVACY.md``; this package implements the erasing and logging side of it, one module per concern:

* ``scrubbing`` — erased values found and replaced in free text and in copies (stored
  idempotency responses, outbox payloads);
* ``erasure`` — reporter and manager erasure;
* ``retention`` — the time-based erasure of reporter data and the idempotency purge;
* ``access_log`` — ``access`` audit entries for reads of personal data;
* ``subject_access`` — every record holding an e-mail address.

What they do:

* **Reporter erasure** (:func:`erase_reporter`): the reporter's name and contact are set to NULL on
  the incident and removed from every copy — stored idempotency responses, outbox (webhook)
  payloads — and literal occurrences of the erased values are replaced by ``[erased]`` in the
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

from app.services.privacy.access_log import (
    log_access,
    log_reporter_access,
    manager_contact_fields,
    reporter_fields,
)
from app.services.privacy.erasure import (
    ReporterErasure,
    erase_manager,
    erase_reporter,
    erase_reporter_by_id,
    erase_reporters,
    manager_pseudonym,
)
from app.services.privacy.retention import (
    RETENTION_BATCH,
    RETENTION_STATUSES,
    RetentionReport,
    purge_expired_idempotency_records,
    retention_cutoff,
    retention_due,
    retention_ends_on,
    run_retention,
    run_retention_batch,
    run_retention_once,
)
from app.services.privacy.scrubbing import (
    ERASED,
    MIN_ERASE_LENGTH,
    ScrubTarget,
    ValueEraser,
    scrub_idempotency_records,
    scrub_outbox,
)
from app.services.privacy.subject_access import NOT_SEARCHED, subject_access

__all__ = [
    "ERASED",
    "MIN_ERASE_LENGTH",
    "NOT_SEARCHED",
    "RETENTION_BATCH",
    "RETENTION_STATUSES",
    "ReporterErasure",
    "RetentionReport",
    "ScrubTarget",
    "ValueEraser",
    "erase_manager",
    "erase_reporter",
    "erase_reporter_by_id",
    "erase_reporters",
    "log_access",
    "log_reporter_access",
    "manager_contact_fields",
    "manager_pseudonym",
    "purge_expired_idempotency_records",
    "reporter_fields",
    "retention_cutoff",
    "retention_due",
    "retention_ends_on",
    "run_retention",
    "run_retention_batch",
    "run_retention_once",
    "scrub_idempotency_records",
    "scrub_outbox",
    "subject_access",
]
