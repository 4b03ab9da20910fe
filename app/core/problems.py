"""Every problem type kokoma answers with: its slug, HTTP status, title and when it happens.

One registry for the RFC 9457 ``type`` of every ``application/problem+json`` response. Raise
sites name an entry (``raise Conflict(detail, type_=ProblemType.SLOT_TAKEN)``); the exception
takes its status and title from it, the error handler renders it as ``/problems/<slug>``, and the
OpenAPI ``responses=`` of the routes (:func:`app.api.problems.problems`) describe each status with
its general entry. The README's "Problem types" table lists the same entries (a test keeps the two
in step).

General entries (one per status, :data:`GENERAL`) are what an error says when nothing more
specific applies; specific entries refine one of them and keep its status. ``value`` is the slug:
``ProblemType("slot-taken") is ProblemType.SLOT_TAKEN``.
"""

from __future__ import annotations

from enum import Enum, unique
from types import MappingProxyType

PROBLEM_BASE = "/problems/"


@unique
class ProblemType(Enum):
    """A problem type: ``value`` is the slug; ``status``, ``title`` and ``description`` go with it."""

    status: int
    title: str
    description: str

    def __new__(cls, slug: str, status: int, title: str, description: str) -> ProblemType:
        member = object.__new__(cls)
        member._value_ = slug
        member.status = status
        member.title = title
        member.description = description
        return member

    @property
    def uri(self) -> str:
        """The ``type`` member of the problem document (relative URI reference)."""
        return PROBLEM_BASE + self.value

    # --- general: one per HTTP status ---------------------------------------------------------
    BAD_REQUEST = "bad-request", 400, "Bad request", "Bad request (e.g. an invalid cursor)"
    UNAUTHORIZED = (
        "unauthorized",
        401,
        "Authentication required",
        "No or unknown API key",
    )
    FORBIDDEN = "forbidden", 403, "Forbidden", "The key's role may not do this"
    NOT_FOUND = "not-found", 404, "Not found", "Not found (or not visible to this key)"
    METHOD_NOT_ALLOWED = (
        "method-not-allowed",
        405,
        "Method not allowed",
        "The route exists but not with this method",
    )
    NOT_ACCEPTABLE = (
        "not-acceptable",
        406,
        "Not acceptable",
        "No representation matches the Accept header",
    )
    CONFLICT = "conflict", 409, "Conflict", "Conflict with the current state"
    PRECONDITION_FAILED = (
        "precondition-failed",
        412,
        "Precondition failed",
        "If-Match names a stale version",
    )
    REQUEST_TIMEOUT = (
        "request-timeout",
        408,
        "Request timeout",
        "The body did not arrive in time",
    )
    PAYLOAD_TOO_LARGE = "payload-too-large", 413, "Payload too large", "Body too large"
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported-media-type",
        415,
        "Unsupported media type",
        "Unsupported media type",
    )
    VALIDATION_ERROR = "validation-error", 422, "Validation error", "Validation error"
    TOO_MANY_REQUESTS = (
        "too-many-requests",
        429,
        "Too many requests",
        "Rate limit for this API key exceeded (see Retry-After)",
    )
    INTERNAL_ERROR = (
        "internal-error",
        500,
        "Internal server error",
        "An unexpected error; the server log has the details",
    )
    SERVICE_UNAVAILABLE = (
        "service-unavailable",
        503,
        "Service unavailable",
        "The database is unavailable (see Retry-After)",
    )

    # --- 400 ------------------------------------------------------------------------------------
    INVALID_CURSOR = (
        "invalid-cursor",
        400,
        "Invalid cursor",
        "The list cursor was not issued by this server; start again without it",
    )

    # --- 401 / 403: sign-in ---------------------------------------------------------------------
    INVALID_TOKEN = (
        "invalid-token",
        401,
        "Authentication required",
        "The bearer token is not a valid, current token of the configured OpenID provider",
    )
    NO_ROLE = "no-role", 403, "Forbidden", "The token carries no kokoma role"
    UNKNOWN_ORGANISATION = (
        "unknown-organisation",
        403,
        "Forbidden",
        "A partner token names no known, active organisation",
    )
    UNKNOWN_MANAGER = (
        "unknown-manager",
        403,
        "Forbidden",
        "A manager token's e-mail address belongs to no manager",
    )
    RETIRED_MANAGER = (
        "retired-manager",
        403,
        "Forbidden",
        "A manager token's e-mail address belongs to a retired manager",
    )

    # --- 409: state -----------------------------------------------------------------------------
    DUPLICATE = (
        "duplicate",
        409,
        "Conflict",
        "A record with this key (code, e-mail address, source and external_id) exists already",
    )
    INVALID_TRANSITION = (
        "invalid-transition",
        409,
        "Conflict",
        "The status change is not allowed from this status",
    )
    OPEN_ASSIGNMENTS = (
        "open-assignments",
        409,
        "Conflict",
        "The incident cannot be closed while it has open assignments",
    )
    CAPACITY_IN_USE = (
        "capacity-in-use",
        409,
        "Conflict",
        "max_open_assignments cannot go below the manager's open assignments",
    )
    NOT_RETIRED = (
        "not-retired",
        409,
        "Conflict",
        "Only retired managers can be erased",
    )
    INCIDENT_NOT_DISPATCHABLE = (
        "incident-not-dispatchable",
        409,
        "Conflict",
        "Offers are made only for triaged or dispatched incidents",
    )
    AT_CAPACITY = (
        "at-capacity",
        409,
        "Conflict",
        "The manager holds max_open_assignments open assignments",
    )
    NOT_ELIGIBLE = (
        "not-eligible",
        409,
        "Conflict",
        "The picked manager does not fit the incident",
    )
    ESCALATION_ABOVE_VOLUNTEER_LEVEL = (
        "escalation-above-volunteer-level",
        409,
        "Conflict",
        "Above the volunteer level a coordinator picks the manager",
    )
    NO_CANDIDATE = "no-candidate", 409, "Conflict", "No manager fits the incident"
    SLOT_TAKEN = "slot-taken", 409, "Conflict", "The lead or co slot of the incident is taken"
    NOT_TANDEM = (
        "not-tandem",
        409,
        "Conflict",
        "Only tandem incidents have a co slot",
    )
    ASSIGNMENT_NOT_ACCEPTED = (
        "assignment-not-accepted",
        409,
        "Conflict",
        "Only an accepted assignment can be completed",
    )
    ASSIGNMENT_NOT_OPEN = (
        "assignment-not-open",
        409,
        "Conflict",
        "Only an offered or accepted assignment can be withdrawn",
    )
    OFFER_NOT_OPEN = (
        "offer-not-open",
        409,
        "Conflict",
        "The offer was answered, withdrawn or has expired",
    )
    PROGRESS_REQUIRES_IMPLEMENTED = (
        "progress-requires-implemented",
        409,
        "Conflict",
        "Progress 100 is reached by the transition to 'implemented'",
    )
    PROGRESS_FIXED_WHEN_IMPLEMENTED = (
        "progress-fixed-when-implemented",
        409,
        "Conflict",
        "An implemented recommendation keeps progress 100",
    )
    PROGRESS_DECREASE = (
        "progress-decrease",
        409,
        "Conflict",
        "Progress never goes down",
    )
    CONCURRENT_IMPORT = (
        "concurrent-import",
        409,
        "Conflict",
        "Another import or request created some of the records at the same time",
    )
    IDEMPOTENCY_IN_PROGRESS = (
        "idempotency-in-progress",
        409,
        "Conflict",
        "A request with this Idempotency-Key is still being processed",
    )

    # --- 412 ------------------------------------------------------------------------------------
    STALE_VERSION = (
        "stale-version",
        412,
        "Precondition failed",
        "If-Match names a version other than the current one",
    )

    # --- 422 ------------------------------------------------------------------------------------
    IMPORT_BODY_TIMEOUT = (
        "import-body-timeout",
        408,
        "Request timeout",
        "The import body did not arrive within KOKOMA_IMPORT_BODY_TIMEOUT_SECONDS",
    )
    UNREADABLE_IMPORT = (
        "unreadable-import",
        422,
        "Unreadable import",
        "The import file cannot be read (encoding, header, format)",
    )
    WEBHOOK_TARGET_REFUSED = (
        "webhook-target-refused",
        422,
        "Validation error",
        "The webhook URL points at an address webhooks may not reach",
    )
    INVALID_IDEMPOTENCY_KEY = (
        "invalid-idempotency-key",
        422,
        "Validation error",
        "The Idempotency-Key header is empty or too long",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency-key-reused",
        422,
        "Validation error",
        "The Idempotency-Key was used with a different request",
    )

    # --- 503: the database ----------------------------------------------------------------------
    DATABASE_BUSY = (
        "database-busy",
        503,
        "Database busy",
        "Every database connection of the server is in use",
    )
    DATABASE_DEADLOCK = (
        "database-deadlock",
        503,
        "Concurrent update",
        "A deadlock with concurrent requests, retried without success; nothing was written",
    )
    DATABASE_SERIALIZATION_FAILURE = (
        "database-serialization-failure",
        503,
        "Concurrent update",
        "A serialization failure, retried without success; nothing was written",
    )
    DATABASE_OVERLOADED = (
        "database-overloaded",
        503,
        "Database overloaded",
        "The database accepts no more connections",
    )
    DATABASE_TIMEOUT = (
        "database-timeout",
        503,
        "Database timeout",
        "A lock or statement timeout; nothing was written",
    )
    DATABASE_NOT_MIGRATED = (
        "database-not-migrated",
        503,
        "Database not migrated",
        "Run `kokoma migrate`",
    )
    DATABASE_UNWRITABLE = (
        "database-unwritable",
        503,
        "Database cannot write",
        "The database is read-only or out of space",
    )


#: The general problem type of each HTTP status.
GENERAL: MappingProxyType[int, ProblemType] = MappingProxyType(
    {
        p.status: p
        for p in (
            ProblemType.BAD_REQUEST,
            ProblemType.UNAUTHORIZED,
            ProblemType.FORBIDDEN,
            ProblemType.NOT_FOUND,
            ProblemType.METHOD_NOT_ALLOWED,
            ProblemType.NOT_ACCEPTABLE,
            ProblemType.CONFLICT,
            ProblemType.PRECONDITION_FAILED,
            ProblemType.REQUEST_TIMEOUT,
            ProblemType.PAYLOAD_TOO_LARGE,
            ProblemType.UNSUPPORTED_MEDIA_TYPE,
            ProblemType.VALIDATION_ERROR,
            ProblemType.TOO_MANY_REQUESTS,
            ProblemType.INTERNAL_ERROR,
            ProblemType.SERVICE_UNAVAILABLE,
        )
    }
)


def for_status(status: int) -> ProblemType:
    """The general problem type of an HTTP status (a 5xx without one is an internal error)."""
    general = GENERAL.get(status)
    if general is not None:
        return general
    return ProblemType.INTERNAL_ERROR if status >= 500 else ProblemType.BAD_REQUEST
