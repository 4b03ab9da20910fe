"""Candidate matching for one incident (DESIGN §2 "Dispatch — matching").

Pure functions over frozen dataclasses: no database, no clock, no settings. The caller loads the
facts (:class:`IncidentFacts`, one :class:`ManagerFacts` per roster member) and passes *today* (the
date in ``KOKOMA_TIMEZONE``) and *now* (UTC) explicitly.

Hard constraints, checked in this order; an excluded manager is counted once, under the first one
it fails (:data:`EXCLUSION_REASONS`):

1. ``not_active`` — status is not ``active`` (``in_training``, ``paused`` and ``retired`` included);
2. ``absent`` — an absence covers today (both bounds inclusive);
3. ``at_capacity`` — ``open_assignments >= max_open_assignments``;
4. ``missing_competence`` — some required competence is not held validly today
   (``certified_on <= today`` and ``expires_on`` null or ``>= today``);
5. ``wrong_district`` — serves neither the incident's district (home or served) nor, while the
   neighbour fallback is in effect, a neighbouring district. The fallback is in effect only when
   ``fallback_neighbours`` is on *and* no manager serving the district itself passes **all** hard
   constraints (including ``already_involved`` and ``language``);
6. ``already_involved`` — holds an open assignment on the incident, or declined, let expire or was
   withdrawn from one (a completed assignment does not exclude);
7. ``language`` — the incident lists languages and the manager speaks none of them.

Soft score: ``score = Σ weight·value`` over the candidate's ``reasons``, every value in [0, 1],
values rounded to 4 decimals and the score to 4 decimals. The weights (:data:`WEIGHTS`) sum to 1:

| factor               | weight | value                                                           |
|----------------------|-------:|-----------------------------------------------------------------|
| `district`           |   0.35 | home district 1.0, served district 0.6, neighbouring district 0.3 |
| `load`               |   0.25 | 1 − open assignments / max open assignments                     |
| `fairness`           |   0.15 | days since the last assignment / 30, capped at 1; never assigned 1.0 |
| `competence_breadth` |   0.10 | extra valid relevant competences beyond the required / 3, capped at 1 |
| `continuity`         |   0.15 | earlier cases in this district / 3, capped at 1                  |

"Relevant" competences are :attr:`IncidentFacts.relevant_competences` when the caller gives them
(e.g. derived from the incident category), otherwise every valid competence the incident does not
require counts as extra. Ranking order: score descending, then fewer open assignments, then
manager id ascending — fully deterministic.

Cost: ~4 µs per roster member. When only the candidates matter (batch dispatch), passing just
the managers who are active, below capacity and serve the district or a neighbouring one yields
exactly the same candidates (only ``excluded`` shrinks): nobody else can qualify, nor decide the
fallback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Final, Literal
from uuid import UUID

from app.models.matching_facts import (
    ACTIVE_STATUS,
    AbsencePeriod,
    CompetenceHolding,
    IncidentFacts,
    ManagerFacts,
)

ExclusionReason = Literal[
    "not_active",
    "absent",
    "at_capacity",
    "missing_competence",
    "wrong_district",
    "already_involved",
    "language",
]
DistrictMatch = Literal["home", "served", "neighbour"]
Factor = Literal["district", "load", "fairness", "competence_breadth", "continuity"]

EXCLUSION_REASONS: Final[tuple[ExclusionReason, ...]] = (
    "not_active",
    "absent",
    "at_capacity",
    "missing_competence",
    "wrong_district",
    "already_involved",
    "language",
)
"""Hard constraints in the order they are checked; also the keys of :attr:`Ranking.excluded`."""

WEIGHTS: Final[Mapping[Factor, float]] = MappingProxyType(
    {
        "district": 0.35,
        "load": 0.25,
        "fairness": 0.15,
        "competence_breadth": 0.10,
        "continuity": 0.15,
    }
)
"""Soft-score weights, one per factor, summing to 1 (the order is the order of ``reasons``)."""

DISTRICT_VALUES: Final[Mapping[DistrictMatch, float]] = MappingProxyType(
    {"home": 1.0, "served": 0.6, "neighbour": 0.3}
)
FAIRNESS_SATURATION_DAYS: Final = 30
"""Days since the last assignment after which the fairness value is 1.0."""
BREADTH_SATURATION: Final = 3
"""Extra relevant competences after which the competence_breadth value is 1.0."""
CONTINUITY_SATURATION: Final = 3
"""Earlier cases in the district after which the continuity value is 1.0."""

_PRECISION: Final = 4


@dataclass(frozen=True, slots=True)
class Reason:
    """One soft-score factor: ``weight·value`` is its contribution to the score."""

    factor: Factor
    value: float
    weight: float
    detail: str


@dataclass(frozen=True, slots=True)
class Candidate:
    manager_id: UUID
    display_name: str
    score: float
    district_match: DistrictMatch
    open_assignments: int
    reasons: list[Reason]


@dataclass(frozen=True, slots=True)
class Ranking:
    """Ranked candidates and, per hard constraint, how many managers it excluded.

    ``excluded`` always has all seven :data:`EXCLUSION_REASONS` as keys; ``len(candidates)`` before
    any ``limit`` plus ``sum(excluded.values())`` is the roster size. ``fallback_used`` tells
    whether neighbouring districts were admitted.
    """

    candidates: list[Candidate]
    excluded: dict[ExclusionReason, int]
    fallback_used: bool


def is_absent(absences: Iterable[AbsencePeriod], today: date) -> bool:
    """Whether any absence covers ``today`` (``starts_on <= today <= ends_on``)."""
    return any(absence.starts_on <= today <= absence.ends_on for absence in absences)


def competence_valid(holding: CompetenceHolding, today: date) -> bool:
    """Certified by ``today`` and not expired: an ``expires_on`` of today is still valid."""
    return holding.certified_on <= today and (
        holding.expires_on is None or holding.expires_on >= today
    )


def valid_competences(manager: ManagerFacts, today: date) -> frozenset[str]:
    """Codes of the competences the manager holds validly today."""
    return frozenset(h.code for h in manager.competences if competence_valid(h, today))


def district_match(incident: IncidentFacts, manager: ManagerFacts) -> DistrictMatch | None:
    """How the manager relates to the incident's district: home, served, neighbour or not at all."""
    if manager.home_district == incident.district:
        return "home"
    if incident.district in manager.districts:
        return "served"
    if manager.home_district in incident.neighbours or not manager.districts.isdisjoint(
        incident.neighbours
    ):
        return "neighbour"
    return None


def rank_candidates(
    incident: IncidentFacts,
    managers: Iterable[ManagerFacts],
    today: date,
    *,
    fallback_neighbours: bool = True,
    now: datetime,
    limit: int | None = None,
    valid: Mapping[UUID, frozenset[str]] | None = None,
) -> Ranking:
    """Rank the roster for ``incident`` (see the module docstring for the rules).

    ``limit`` cuts the candidate list only; ``excluded`` always covers the whole roster.
    ``valid``: each manager's :func:`valid_competences` on ``today``, when the caller has them
    already (a batch ranks the same managers many times).
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    excluded: dict[ExclusionReason, int] = dict.fromkeys(EXCLUSION_REASONS, 0)
    # Managers past the district-independent constraints, with their district relation and the
    # first district-independent constraint they fail after it (already_involved, language).
    passed: list[tuple[ManagerFacts, DistrictMatch, ExclusionReason | None, frozenset[str]]] = []
    for manager in managers:
        # Once per manager: the competence constraint and the breadth factor both use it.
        held = valid[manager.id] if valid is not None else valid_competences(manager, today)
        failure = _first_failure_before_district(incident, manager, today, held)
        if failure is not None:
            excluded[failure] += 1
            continue
        match = district_match(incident, manager)
        if match is None:
            excluded["wrong_district"] += 1
            continue
        passed.append((manager, match, _first_failure_after_district(incident, manager), held))

    fallback_used = fallback_neighbours and not any(
        match != "neighbour" and failure is None for _, match, failure, _ in passed
    )
    candidates: list[Candidate] = []
    for manager, match, failure, held in passed:
        if match == "neighbour" and not fallback_used:
            excluded["wrong_district"] += 1
        elif failure is not None:
            excluded[failure] += 1
        else:
            candidates.append(_score(incident, manager, match, held, now=now))

    candidates.sort(key=lambda c: (-c.score, c.open_assignments, c.manager_id))
    if limit is not None:
        candidates = candidates[:limit]
    return Ranking(candidates=candidates, excluded=excluded, fallback_used=fallback_used)


def check_manual_pick(
    incident: IncidentFacts, manager: ManagerFacts, today: date
) -> ExclusionReason | None:
    """First hard constraint a coordinator's pick fails, or ``None`` when eligible.

    Same constraints and order as :func:`rank_candidates`, except that a neighbouring district is
    always allowed (DESIGN §2).
    """
    failure = _first_failure_before_district(
        incident, manager, today, valid_competences(manager, today)
    )
    if failure is not None:
        return failure
    if district_match(incident, manager) is None:
        return "wrong_district"
    return _first_failure_after_district(incident, manager)


def score_manager(
    incident: IncidentFacts, manager: ManagerFacts, today: date, *, now: datetime
) -> Candidate:
    """Score and explain one manager, e.g. a manual pick (hard constraints are not checked).

    Raises ``ValueError`` when the manager serves neither the district nor a neighbouring one.
    """
    match = district_match(incident, manager)
    if match is None:
        raise ValueError("manager serves neither the incident's district nor a neighbouring one")
    return _score(incident, manager, match, valid_competences(manager, today), now=now)


def _first_failure_before_district(
    incident: IncidentFacts, manager: ManagerFacts, today: date, valid: frozenset[str]
) -> ExclusionReason | None:
    if manager.status != ACTIVE_STATUS:
        return "not_active"
    if is_absent(manager.absences, today):
        return "absent"
    if manager.open_assignments >= manager.max_open_assignments:
        return "at_capacity"
    if not incident.required_competences <= valid:
        return "missing_competence"
    return None


def _first_failure_after_district(
    incident: IncidentFacts, manager: ManagerFacts
) -> ExclusionReason | None:
    if manager.already_involved:
        return "already_involved"
    if incident.languages and incident.languages.isdisjoint(manager.languages):
        return "language"
    return None


def _score(
    incident: IncidentFacts,
    manager: ManagerFacts,
    match: DistrictMatch,
    valid: frozenset[str],
    *,
    now: datetime,
) -> Candidate:
    reasons = [
        _district_reason(match),
        _load_reason(manager),
        _fairness_reason(manager, now),
        _breadth_reason(incident, valid),
        _continuity_reason(manager),
    ]
    score = round(math.fsum(r.weight * r.value for r in reasons), _PRECISION)
    return Candidate(
        manager_id=manager.id,
        display_name=manager.display_name,
        score=score,
        district_match=match,
        open_assignments=manager.open_assignments,
        reasons=reasons,
    )


def _reason(factor: Factor, value: float, detail: str) -> Reason:
    clamped = min(max(value, 0.0), 1.0)
    return Reason(
        factor=factor, value=round(clamped, _PRECISION), weight=WEIGHTS[factor], detail=detail
    )


_DISTRICT_DETAILS: Final[Mapping[DistrictMatch, str]] = MappingProxyType(
    {
        "home": "home district",
        "served": "serves this district",
        "neighbour": "neighbouring district",
    }
)


# Reasons are immutable and depend on a few small values each: the same one is shared by every
# candidate with those values (a batch scores thousands of candidates; building each Reason anew
# cost more than ranking them). The caches are bounded; the values and details are unchanged.


@cache  # three matches
def _district_reason(match: DistrictMatch) -> Reason:
    return _reason("district", DISTRICT_VALUES[match], _DISTRICT_DETAILS[match])


def _load_reason(manager: ManagerFacts) -> Reason:
    return _load_reason_of(manager.open_assignments, max(manager.max_open_assignments, 1))


@lru_cache(maxsize=1024)
def _load_reason_of(used: int, capacity: int) -> Reason:
    noun = "slot" if capacity == 1 else "slots"
    return _reason("load", 1.0 - used / capacity, f"{used} of {capacity} {noun} in use")


def _fairness_reason(manager: ManagerFacts, now: datetime) -> Reason:
    if manager.last_assigned_at is None:
        return _NEVER_ASSIGNED
    return _fairness_reason_of(manager.last_assigned_at, now)


@lru_cache(maxsize=16_384)
def _fairness_reason_of(last_assigned_at: datetime, now: datetime) -> Reason:
    days = max((now - last_assigned_at).total_seconds() / 86_400, 0.0)
    whole_days = int(days)
    if whole_days == 0:
        detail = "last assignment today"
    elif whole_days == 1:
        detail = "last assignment 1 day ago"
    else:
        detail = f"last assignment {whole_days} days ago"
    return _reason("fairness", days / FAIRNESS_SATURATION_DAYS, detail)


def _breadth_reason(incident: IncidentFacts, valid: frozenset[str]) -> Reason:
    extra = valid - incident.required_competences
    if incident.relevant_competences is not None:
        extra &= incident.relevant_competences
    return _breadth_reason_of(extra)


@lru_cache(maxsize=1024)
def _breadth_reason_of(extra: frozenset[str]) -> Reason:
    if not extra:
        detail = "no extra competences"
    else:
        noun = "competence" if len(extra) == 1 else "competences"
        detail = f"{len(extra)} extra {noun} ({', '.join(sorted(extra))})"
    return _reason("competence_breadth", len(extra) / BREADTH_SATURATION, detail)


def _continuity_reason(manager: ManagerFacts) -> Reason:
    return _continuity_reason_of(max(manager.earlier_cases_in_district, 0))


@lru_cache(maxsize=256)
def _continuity_reason_of(cases: int) -> Reason:
    if cases == 0:
        detail = "no earlier cases in this district"
    elif cases == 1:
        detail = "1 earlier case in this district"
    else:
        detail = f"{cases} earlier cases in this district"
    return _reason("continuity", cases / CONTINUITY_SATURATION, detail)


_NEVER_ASSIGNED: Final = _reason("fairness", 1.0, "never assigned")
