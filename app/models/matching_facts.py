"""The facts dispatch matching decides on: plain frozen data, no behaviour beyond derivations.

Repositories load them (app/repositories/dispatch.py); the pure engine
(app/services/dispatch/matching.py) ranks over them. They live with the models so that the
repository layer needs nothing from the services above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from uuid import UUID

ACTIVE_STATUS: Final = "active"
INVOLVING_ASSIGNMENT_STATUSES: Final[frozenset[str]] = frozenset(
    {"offered", "accepted", "declined", "expired", "withdrawn"}
)
"""Statuses of a manager's assignment on an incident that make them ``already_involved``."""


@dataclass(frozen=True, slots=True)
class CompetenceHolding:
    """A competence a manager is certified in."""

    code: str
    certified_on: date
    expires_on: date | None = None


@dataclass(frozen=True, slots=True)
class AbsencePeriod:
    """A manager's absence; both dates inclusive."""

    starts_on: date
    ends_on: date


@dataclass(frozen=True, slots=True)
class ManagerFacts:
    """What matching needs to know about one manager, relative to one incident.

    ``open_assignments`` counts the manager's offered + accepted assignments on any incident.
    ``statuses_on_incident`` holds the statuses of the manager's assignments on the incident being
    matched (empty when none). ``earlier_cases_in_district`` counts the manager's earlier
    (accepted or completed) assignments on other incidents in the incident's district.
    ``last_assigned_at`` must be timezone-aware, like ``now``.
    """

    id: UUID
    display_name: str
    status: str
    home_district: str
    districts: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    max_open_assignments: int = 2
    competences: tuple[CompetenceHolding, ...] = ()
    absences: tuple[AbsencePeriod, ...] = ()
    open_assignments: int = 0
    last_assigned_at: datetime | None = None
    statuses_on_incident: frozenset[str] = frozenset()
    earlier_cases_in_district: int = 0

    @property
    def already_involved(self) -> bool:
        """Holds an open assignment on the incident, or declined / expired / was withdrawn."""
        return any(
            str(status) in INVOLVING_ASSIGNMENT_STATUSES for status in self.statuses_on_incident
        )


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What matching needs to know about the incident.

    ``neighbours`` are the district codes neighbouring ``district``. ``relevant_competences``
    limits which extra competences count for ``competence_breadth``; ``None`` means all of them.
    """

    id: UUID
    district: str
    required_competences: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    neighbours: frozenset[str] = frozenset()
    relevant_competences: frozenset[str] | None = None
