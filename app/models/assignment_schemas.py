"""Request/response schemas of dispatch: offers (assignments), candidates, batch auto-dispatch."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StringConstraints

from app.models.assignment import AssignmentRole, AssignmentStatus
from app.models.common import RequestModel, ResponseModel, UTCTimestamp

ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
OutcomeText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)
]


# --- requests ----------------------------------------------------------------------------------


class AssignmentCreate(RequestModel):
    """Offer a slot of an incident. Without ``manager_id`` the best candidate is taken."""

    incident_id: uuid.UUID
    manager_id: uuid.UUID | None = Field(
        default=None, description="A coordinator's pick; omitted = the best candidate (auto-pick)"
    )
    role: AssignmentRole | None = Field(
        default=None,
        description="lead or co; default: lead while the lead slot is free, else co (tandem only)",
    )


class Decline(RequestModel):
    reason: ReasonText


class Complete(RequestModel):
    outcome: OutcomeText


class Withdraw(RequestModel):
    reason: ReasonText | None = None


class AutoDispatchRequest(RequestModel):
    incident_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=5000,
        description="The incidents to dispatch; omitted = every triaged incident",
    )
    dry_run: StrictBool = Field(
        default=False, description="Plan only: return the plan, write nothing"
    )


# --- responses ---------------------------------------------------------------------------------


class ReasonPublic(ResponseModel):
    """One soft-score factor: ``weight·value`` is its share of the score."""

    factor: str
    value: float
    weight: float
    detail: str


class AssignmentPublic(ResponseModel):
    id: uuid.UUID
    incident_id: uuid.UUID
    manager_id: uuid.UUID
    manager_display_name: str | None = None
    role: AssignmentRole
    status: AssignmentStatus
    offered_at: UTCTimestamp
    responded_at: UTCTimestamp | None
    expires_at: UTCTimestamp
    ended_at: UTCTimestamp | None
    score: float | None
    reasons: list[ReasonPublic]
    decline_reason: str | None = Field(
        description="null when the caller's role may not see it (partners)"
    )
    withdraw_reason: str | None = Field(
        description="null when the caller's role may not see it (partners)"
    )
    outcome: str | None
    version: int
    created_at: UTCTimestamp
    updated_at: UTCTimestamp


class CandidatePublic(ResponseModel):
    manager_id: uuid.UUID
    display_name: str
    score: float
    district_match: Literal["home", "served", "neighbour"]
    open_assignments: int
    reasons: list[ReasonPublic]


class ExcludedCounts(ResponseModel):
    """Managers excluded, each counted once under the first hard constraint it fails."""

    not_active: int = 0
    absent: int = 0
    at_capacity: int = 0
    missing_competence: int = 0
    wrong_district: int = 0
    language: int = 0
    already_involved: int = 0


class CandidatesResponse(ResponseModel):
    incident_id: uuid.UUID
    candidates: list[CandidatePublic]
    excluded: ExcludedCounts
    fallback_used: bool = Field(
        description="Whether managers of neighbouring districts were admitted"
    )


class PlannedAssignmentPublic(ResponseModel):
    """An assignment of a dry-run plan (nothing written)."""

    status: Literal["planned"] = "planned"
    incident_id: uuid.UUID
    manager_id: uuid.UUID
    manager_display_name: str
    role: AssignmentRole
    score: float
    reasons: list[ReasonPublic]


UnassignedReason = Literal[
    "no_candidate", "no_tandem_partner", "not_triaged", "escalation_above_volunteer_level"
]


class UnassignedIncident(ResponseModel):
    incident_id: uuid.UUID
    reason: UnassignedReason


class AutoDispatchResult(ResponseModel):
    dry_run: bool
    assignments: list[AssignmentPublic | PlannedAssignmentPublic] = Field(
        description="Offers made (AssignmentPublic) or, with dry_run, the planned ones"
    )
    unassigned: list[UnassignedIncident]
    total_score: float = Field(description="Sum of the scores of the (planned) assignments")
    optimal: bool = Field(description="Whether the plan is proven optimal (always, barring limits)")
