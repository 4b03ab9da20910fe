"""API keys: created with a random secret shown once, listed without it, revoked."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlmodel import Session, col

from app.core.clock import get_clock
from app.core.errors import NotFound, Unprocessable
from app.core.pagination import PageParams, keyset, page_slice
from app.core.security import Principal, forget_keys, generate_key, hash_key
from app.models.manager import Manager
from app.models.reference import Organisation
from app.models.system import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from app.services import audit


class ApiKeyService:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, body: ApiKeyCreate, principal: Principal) -> ApiKeyCreated:
        if body.organisation_id and self.session.get(Organisation, body.organisation_id) is None:
            raise Unprocessable(
                "Unknown organisation_id.",
                errors=[
                    {
                        "loc": ["body", "organisation_id"],
                        "msg": "unknown organisation",
                        "type": "unknown_reference",
                    }
                ],
            )
        if body.manager_id and self.session.get(Manager, body.manager_id) is None:
            raise Unprocessable(
                "Unknown manager_id.",
                errors=[
                    {
                        "loc": ["body", "manager_id"],
                        "msg": "unknown manager",
                        "type": "unknown_reference",
                    }
                ],
            )
        secret = generate_key()
        key = ApiKey(
            name=body.name,
            role=body.role,
            organisation_id=body.organisation_id,
            manager_id=body.manager_id,
            key_hash=hash_key(secret),
            prefix=secret[:12],
            created_at=get_clock().now(),
        )
        self.session.add(key)
        self.session.flush()
        audit.record(self.session, principal, "create", "api_key", key.id, ["name", "role"])
        return ApiKeyCreated(
            id=key.id,
            name=key.name,
            role=body.role,
            organisation_id=key.organisation_id,
            manager_id=key.manager_id,
            created_at=key.created_at,
            key=secret,
        )

    def page(self, params: PageParams) -> tuple[list[ApiKeyPublic], str | None]:
        stmt = keyset(select(ApiKey), [col(ApiKey.created_at), col(ApiKey.id)], params)
        rows, cursor = page_slice(
            self.session.scalars(stmt).all(), params.limit, lambda k: [k.created_at, k.id]
        )
        return [ApiKeyPublic.model_validate(k) for k in rows], cursor

    def revoke(self, key_id: uuid.UUID, principal: Principal) -> None:
        key = self.session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"No API key {key_id}.")
        if key.revoked_at is None:
            key.revoked_at = get_clock().now()
            self.session.add(key)
            audit.record(self.session, principal, "revoke", "api_key", key.id, ["revoked_at"])
        forget_keys(self.session)
