"""Bulk imports of incidents and managers: streamed, validated per row, written in batches.

The body is read as a stream of byte chunks (:mod:`app.services.csv_io`), one record at a time;
valid rows are collected into batches of ``KOKOMA_IMPORT_BATCH_ROWS`` (2,000). Per batch there is
one SELECT for the existing keys (``(source, external_id)`` / ``email``) and one for their
competences, then bulk writes: on PostgreSQL ``COPY … FROM STDIN`` into every table (incident,
competences, timeline, outbox, audit), elsewhere one ``executemany`` INSERT per table; changed rows
are updated with one ``executemany`` UPDATE. The database work runs on a thread of its own while
the next batches are parsed (:class:`~app.services.imports.pipeline.Pipeline`). Memory is constant except for one 64-bit hash
per key, kept to refuse a key that appears twice in the same file (≈ 60 bytes per row).

Transactions: imports are the one place a service commits, because batching is the point.
``atomic=true`` (default): everything is one transaction; at the first row error it is rolled
back and the rest of the file is only validated (so the response still lists every error) —
nothing is written and ``created``/``updated`` are 0 (a dry run tells what the rows would do). ``atomic=false``: each batch is committed,
rows with errors are skipped. ``dry_run``: validate and classify, write nothing.

Semantics of a row (documented in the README):

* incidents are keyed by ``(source, external_id)``, ``source`` defaulting to ``import``; beside
  an ``external_id`` the ``reference`` is ignored (the importing database allocates references,
  in file order, in blocks — see :class:`app.services.references.ReferenceBlocks`); without one
  (an incident created through the API, exported) the ``reference`` is the key: found, or
  created with exactly that reference (the counter is raised past it); ``status`` is used when
  a row *creates* an incident (legacy data, e.g.
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

Modules: :mod:`.base` (kinds, columns, the report, the importer interface), :mod:`.cells` (cell
parsers), :mod:`.refdata` (reference data loaded once), :mod:`.pipeline` (the run and its
database thread), :mod:`.incidents` with :mod:`.incident_rows` (row validation) and
:mod:`.managers`. The bulk writer is :mod:`app.repositories.bulk`; the records of a new incident
are :mod:`app.services.incident_records` (shared with the API).
"""

from app.services.imports.base import (
    INCIDENT_COLUMNS,
    INCIDENT_REQUIRED,
    MANAGER_COLUMNS,
    MANAGER_REQUIRED,
    MAX_REPORTED_ERRORS,
    BodyFormat,
    FieldError,
    ImportKind,
    ImportResult,
)
from app.services.imports.incidents import IncidentImporter
from app.services.imports.managers import ManagerImporter
from app.services.imports.pipeline import Pipeline, run_import
from app.services.imports.refdata import ReferenceData
from app.services.incident_records import (
    REPORTER_COLUMNS,
    incident_webhook_view,
    public_incident_fields,
)

__all__ = [
    "INCIDENT_COLUMNS",
    "INCIDENT_REQUIRED",
    "MANAGER_COLUMNS",
    "MANAGER_REQUIRED",
    "MAX_REPORTED_ERRORS",
    "REPORTER_COLUMNS",
    "BodyFormat",
    "FieldError",
    "ImportKind",
    "ImportResult",
    "IncidentImporter",
    "ManagerImporter",
    "Pipeline",
    "ReferenceData",
    "incident_webhook_view",
    "public_incident_fields",
    "run_import",
]
