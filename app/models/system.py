"""API keys, audit trail, idempotency records and reference counters."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field as PField
from pydantic import model_validator
from sqlalchemy import Column, ForeignKey, Index, Text, UniqueConstraint
from sqlalchemy import Uuid as SAUuid
from sqlmodel import Field, SQLModel

from app.models.base import JSONType, UTCDateTime, new_id, table_name, utcnow
from app.models.common import RequestModel, ResponseModel, ShortText, UTCTimestamp
from app.models.privacy import personal


class Role(StrEnum):
    admin = "admin"
    coordinator = "coordinator"
    manager = "manager"
    partner = "partner"
    viewer = "viewer"


class ApiKey(SQLModel, table=True):
    __tablename__ = table_name("api_key")

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=32)
    organisation_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(SAUuid, ForeignKey("organisation.id", ondelete="RESTRICT"), index=True),
    )
    manager_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(SAUuid, ForeignKey("manager.id", ondelete="RESTRICT"), index=True),
    )
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiKeyCreate(RequestModel):
    """A partner key needs an ``organisation_id``; a manager key a ``manager_id`` (and only a
    manager key has one) — else 422."""

    name: ShortText
    role: Role
    organisation_id: uuid.UUID | None = None
    manager_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _bindings(self) -> ApiKeyCreate:
        if self.role is Role.partner and self.organisation_id is None:
            raise ValueError("a partner key needs an organisation_id")
        if self.role is Role.manager and self.manager_id is None:
            raise ValueError("a manager key needs a manager_id")
        if self.role is not Role.manager and self.manager_id is not None:
            raise ValueError("only a manager key is bound to a manager_id")
        return self


class ApiKeyPublic(ResponseModel):
    id: uuid.UUID
    name: str
    role: Role
    organisation_id: uuid.UUID | None
    manager_id: uuid.UUID | None
    prefix: str = PField(description="First characters of the key, to recognise it")
    created_at: UTCTimestamp
    revoked_at: UTCTimestamp | None


class ApiKeyCreated(ResponseModel):
    """Returned once, on creation: ``key`` is never shown again."""

    id: uuid.UUID
    name: str
    role: Role
    organisation_id: uuid.UUID | None
    manager_id: uuid.UUID | None
    created_at: UTCTimestamp
    key: str


class Me(ResponseModel):
    """The caller, as a single-page app needs it after sign-in (``GET /api/v1/me``)."""

    kind: Literal["api_key", "oidc"] = PField(
        description="api_key: a script or integration; oidc: a person signed in at the "
        "identity provider"
    )
    subject: str = PField(description="api_key:<id> or oidc:<sub> — as the audit trail names it")
    display_name: str = PField(description="The key's name or the person's display name")
    role: Role
    organisation_id: uuid.UUID | None = PField(description="A partner's organisation")
    manager_id: uuid.UUID | None = PField(description="A manager's roster entry")


class AuditKind(StrEnum):
    write = "write"
    access = "access"


class AuditEvent(SQLModel, table=True):
    """Who did what to which record, when; changed field names only, never personal values."""

    __tablename__ = table_name("audit_event")
    __table_args__ = (Index("ix_audit_event_resource", "resource", "resource_id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    kind: str = Field(default=AuditKind.write, max_length=16)
    principal_id: uuid.UUID | None = Field(default=None)
    principal_role: str = Field(max_length=32)
    #: ``api_key:<id>``, ``oidc:<sub>`` or ``system`` (NULL on entries older than sign-in)
    principal_subject: str | None = Field(default=None, max_length=300, index=True)
    #: the key's name or the person's display name at the time
    principal_name: str | None = Field(default=None, max_length=200, sa_column_kwargs=personal())
    action: str = Field(max_length=64)
    resource: str = Field(max_length=64)
    resource_id: str = Field(max_length=64)
    fields: list[str] = Field(default_factory=list, sa_type=JSONType)


class AuditEventPublic(ResponseModel):
    id: uuid.UUID
    at: UTCTimestamp
    kind: AuditKind
    principal_id: uuid.UUID | None = PField(description="The API key's id (null for a person)")
    principal_role: str
    principal_subject: str | None = PField(
        description="api_key:<id>, oidc:<sub> (a signed-in person) or system"
    )
    principal_name: str | None = PField(
        description="The API key's name or the person's display name at the time"
    )
    action: str
    resource: str
    resource_id: str
    fields: list[str]


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a POST with an ``Idempotency-Key``, kept for replay."""

    __tablename__ = table_name("idempotency_record")
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    scope: str = Field(max_length=64)
    key: str = Field(max_length=200)
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    request_hash: str = Field(max_length=64)
    status_code: int | None = Field(default=None)
    content_type: str | None = Field(default=None, max_length=100)
    response_body: str | None = Field(default=None, sa_column=Column(Text))
    headers: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class ReferenceCounter(SQLModel, table=True):
    """Atomic per-year sequences for human references (``KOK-2026-00042``, ``REC-2026-007``)."""

    __tablename__ = table_name("reference_counter")

    scope: str = Field(primary_key=True, max_length=16)
    year: int = Field(primary_key=True)
    value: int = Field(default=0)
