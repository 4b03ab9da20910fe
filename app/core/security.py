"""API keys, the authenticated principal and the role rules — in one place.

Keys are 256-bit random tokens (``kok_…``), shown once and stored as SHA-256 digests: with that much
entropy a slow password hash adds nothing, and lookup by digest is a single indexed read. Verified
keys are cached in-process for ``KOKOMA_API_KEY_CACHE_SECONDS`` (default 10 s); revoking a key clears
it from this process at once, other replicas notice within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import event, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import col

from app.models.system import ApiKey, Role

KEY_PREFIX = "kok_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class PrincipalKind(StrEnum):
    api_key = "api_key"
    #: a person signed in at the OpenID provider (``app.core.oidc``)
    oidc = "oidc"
    #: the CLI, the worker and other in-process actors
    system = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API key or a signed-in person, with a role and its binding
    (organisation or manager). The role rules do not care which kind it is."""

    key_id: uuid.UUID | None
    role: Role
    #: the key's name, the person's display name at the time, or the system actor's name
    name: str = ""
    organisation_id: uuid.UUID | None = None
    manager_id: uuid.UUID | None = None
    kind: PrincipalKind = PrincipalKind.api_key
    #: the token's ``sub`` (OIDC principals only)
    oidc_subject: str | None = None

    @property
    def subject(self) -> str:
        """Stable name of the actor in the record: ``api_key:<id>``, ``oidc:<sub>``, ``system``."""
        if self.kind is PrincipalKind.oidc:
            return f"oidc:{self.oidc_subject}"
        if self.key_id is not None:
            return f"api_key:{self.key_id}"
        return "system" if self.name == "system" else f"system:{self.name}"

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def is_staff(self) -> bool:
        """Admins and coordinators: every incident, reporter data, all numbers."""
        return self.role in (Role.admin, Role.coordinator)


#: The CLI and the worker act as this principal (audited as ``system``).
SYSTEM_PRINCIPAL = Principal(key_id=None, role=Role.admin, name="system", kind=PrincipalKind.system)


class Action(StrEnum):
    reference_read = "reference_read"
    reference_write = "reference_write"
    incidents_read = "incidents_read"
    incidents_create = "incidents_create"
    incidents_update = "incidents_update"
    incidents_status = "incidents_status"
    incidents_notes = "incidents_notes"
    managers_read = "managers_read"
    managers_write = "managers_write"
    managers_self = "managers_self"
    dispatch = "dispatch"
    assignments_read = "assignments_read"
    assignments_answer = "assignments_answer"
    recommendations_read = "recommendations_read"
    recommendations_write = "recommendations_write"
    stats_read = "stats_read"
    imports = "imports"
    webhooks = "webhooks"
    notifications_read = "notifications_read"
    api_keys = "api_keys"
    audit = "audit"
    reporter_erase = "reporter_erase"
    data_protection = "data_protection"


A, R = Action, Role
_ALL = frozenset(Role)
_STAFF = frozenset({R.admin, R.coordinator})

#: Which roles may attempt an action. Row-level scoping (a partner's own organisation, a
#: manager's own records and assigned incidents) is applied by the services on top of this.
RULES: dict[Action, frozenset[Role]] = {
    A.reference_read: _ALL,
    A.reference_write: _STAFF,
    A.incidents_read: frozenset({R.admin, R.coordinator, R.manager, R.partner}),
    A.incidents_create: frozenset({R.admin, R.coordinator, R.partner}),
    A.incidents_update: frozenset({R.admin, R.coordinator, R.partner}),
    A.incidents_status: frozenset({R.admin, R.coordinator, R.partner}),
    A.incidents_notes: frozenset({R.admin, R.coordinator, R.manager, R.partner}),
    A.managers_read: _ALL,
    A.managers_write: _STAFF,
    A.managers_self: frozenset({R.admin, R.coordinator, R.manager}),
    A.dispatch: _STAFF,
    A.assignments_read: frozenset({R.admin, R.coordinator, R.manager, R.partner}),
    A.assignments_answer: frozenset({R.admin, R.coordinator, R.manager}),
    # DESIGN §4: recommendations for staff and viewers; (suppressed) statistics for staff,
    # partners and viewers — a manager key is for its own profile, absences and assignments
    A.recommendations_read: frozenset({R.admin, R.coordinator, R.viewer}),
    A.recommendations_write: _STAFF,
    A.stats_read: frozenset({R.admin, R.coordinator, R.partner, R.viewer}),
    A.imports: _STAFF,
    A.webhooks: frozenset({R.admin}),
    A.notifications_read: _STAFF,
    A.api_keys: frozenset({R.admin}),
    A.audit: frozenset({R.admin}),
    A.reporter_erase: _STAFF,
    A.data_protection: frozenset({R.admin}),
}


def allowed(principal: Principal, action: Action) -> bool:
    return principal.role in RULES[action]


class KeyCache:
    """A small TTL cache of verified keys (digest → principal)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, Principal | None]:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, principal: Principal | None, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + ttl, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


key_cache = KeyCache()


def forget_keys(session: OrmSession) -> None:
    """Clear the key cache now and once more when ``session`` commits (revocation): a request
    that read a key between the change and its commit would otherwise re-cache it as valid."""
    key_cache.clear()
    event.listen(session, "after_commit", lambda _session: key_cache.clear(), once=True)


def lookup_principal(conn: Connection, key: str) -> Principal | None:
    """The principal of a presented key, or ``None`` (unknown or revoked)."""
    digest = hash_key(key)
    row = conn.execute(
        select(
            col(ApiKey.id),
            col(ApiKey.role),
            col(ApiKey.name),
            col(ApiKey.organisation_id),
            col(ApiKey.manager_id),
            col(ApiKey.key_hash),
        ).where(col(ApiKey.key_hash) == digest, col(ApiKey.revoked_at).is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(
        key_id=row.id,
        role=Role(row.role),
        name=row.name,
        organisation_id=row.organisation_id,
        manager_id=row.manager_id,
    )
