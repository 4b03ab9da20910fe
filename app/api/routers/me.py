"""Who am I: the caller's principal, as a single-page app needs it after sign-in."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import PrincipalDep
from app.api.problems import problems
from app.core.security import PrincipalKind
from app.models.system import Me

router = APIRouter()


@router.get(
    "/me",
    tags=["auth"],
    summary="The caller: API key or signed-in person, role and binding",
    responses=problems(),
)
async def me_get(principal: PrincipalDep) -> Me:
    assert principal.kind is not PrincipalKind.system  # the CLI's and worker's, never over HTTP
    return Me(
        kind=principal.kind.value,
        subject=principal.subject,
        display_name=principal.display_name,
        role=principal.role,
        organisation_id=principal.organisation_id,
        manager_id=principal.manager_id,
    )
