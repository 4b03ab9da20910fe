"""Candidates for one incident: the exact ranking of the whole roster (``GET …/candidates``, the
automatic pick of ``POST /assignments`` and the refill of a freed slot)."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from app.core.clock import Clock
from app.core.config import Settings
from app.core.security import Principal
from app.models.assignment_schemas import (
    CandidatePublic,
    CandidatesResponse,
    ExcludedCounts,
    ReasonPublic,
)
from app.models.incident import Incident
from app.repositories.dispatch import DispatchRepository
from app.services.dispatch.matching import (
    EXCLUSION_REASONS,
    Candidate,
    ExclusionReason,
    IncidentFacts,
    Ranking,
    rank_candidates,
)
from app.services.dispatch.offers import reasons_of
from app.services.incidents import IncidentService


def candidate_public(candidate: Candidate) -> CandidatePublic:
    return CandidatePublic(
        manager_id=candidate.manager_id,
        display_name=candidate.display_name,
        score=candidate.score,
        district_match=candidate.district_match,
        open_assignments=candidate.open_assignments,
        reasons=[ReasonPublic(**r) for r in reasons_of(candidate)],
    )


class CandidateRanking:
    """The ranking half of :class:`~app.services.dispatch.service.DispatchService`."""

    session: Session
    settings: Settings
    repo: DispatchRepository
    clock: Clock

    def rank(
        self,
        incident: Incident,
        *,
        fallback: bool = True,
        limit: int | None = None,
        facts: IncidentFacts | None = None,
    ) -> Ranking:
        """The exact ranking of the whole roster for ``incident`` (see the repository docstring)."""
        facts = facts or self.repo.incident_facts([incident])[incident.id]
        # First without neighbours: while anyone in the district qualifies, the engine ignores
        # neighbouring districts anyway (they count as wrong_district), so this is exact and
        # loads a third of the facts. Only when nobody there qualifies are neighbours screened.
        ranking = self._rank_screened(incident, facts, neighbours=False, limit=limit)
        if fallback and not ranking.candidates and facts.neighbours:
            ranking = self._rank_screened(incident, facts, neighbours=True, limit=limit)
        return ranking

    def _rank_screened(
        self, incident: Incident, facts: IncidentFacts, *, neighbours: bool, limit: int | None
    ) -> Ranking:
        today, now = self.clock.today(), self.clock.now()
        counts, managers = self.repo.screen_with_facts(facts, today, neighbours=neighbours)
        ranking = rank_candidates(
            facts, managers, today, fallback_neighbours=neighbours, now=now, limit=limit
        )
        excluded: dict[ExclusionReason, int] = {
            r: ranking.excluded[r] + counts.get(r, 0) for r in EXCLUSION_REASONS
        }
        return Ranking(ranking.candidates, excluded, ranking.fallback_used)

    def candidates(
        self, incident_id: uuid.UUID, principal: Principal, *, limit: int, fallback: bool
    ) -> CandidatesResponse:
        incident = IncidentService(self.session).load(incident_id, principal)
        ranking = self.rank(incident, fallback=fallback, limit=limit)
        return CandidatesResponse(
            incident_id=incident.id,
            candidates=[candidate_public(c) for c in ranking.candidates],
            excluded=ExcludedCounts(**ranking.excluded),
            fallback_used=ranking.fallback_used,
        )
