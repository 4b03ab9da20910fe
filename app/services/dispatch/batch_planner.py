"""Batch auto-dispatch, planning: candidates of many incidents from one load of the roster, then
one globally optimal plan (:func:`app.services.dispatch.batch.plan_batch`)."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from app.models.assignment import OPEN_ASSIGNMENT_STATUSES
from app.models.incident import Incident
from app.services.dispatch.batch import BatchIncident, BatchPlan, plan_batch
from app.services.dispatch.matching import (
    Candidate,
    CompetenceHolding,
    IncidentFacts,
    ManagerFacts,
    competence_valid,
    rank_candidates,
)

if TYPE_CHECKING:
    from app.services.dispatch.service import DispatchService

_Shared: TypeAlias = tuple[list[tuple[uuid.UUID, float]], dict[uuid.UUID, Candidate]]
"""A ranking shared by alike incidents: ``(manager id, score)`` pairs and the candidates by id."""


class BatchPlanner:
    """Candidates of many incidents from one load of the available roster, then one plan.

    Same hard constraints and scores as :meth:`DispatchService.rank` (the engine decides), but
    without the exclusion counts, which a batch does not report: only managers that can take an
    offer today at all (active, not absent, a free slot) are loaded, indexed by the districts they
    serve. An incident is ranked first against the managers serving its district; only when none
    of them qualifies are its neighbours' managers added (exactly the engine's fallback rule).
    Incidents alike in district, competences and languages, with no history, share one ranking.
    """

    def __init__(self, service: DispatchService, incidents: Sequence[Incident]) -> None:
        self.service = service
        self.session = service.session
        self.repo = service.repo
        self.incidents = list(incidents)
        self.today: date = service.clock.today()
        self.now: datetime = service.clock.now()
        self.names: dict[uuid.UUID, str] = {}
        self.chosen: dict[uuid.UUID, dict[uuid.UUID, Candidate]] = {}
        self.open_on: set[uuid.UUID] = set()
        self.facts: dict[uuid.UUID, IncidentFacts] = {}
        #: Competences each available manager holds validly today (the engine's valid set).
        self.valid: dict[uuid.UUID, frozenset[str]] = {}

    def plan(self) -> BatchPlan:
        facts = self.repo.incident_facts(self.incidents) if self.incidents else {}
        self.facts = facts
        roster = self.repo.available_roster(self.today) if self.incidents else []
        competences = self.repo.competences_of(None, valid_on=self.today) if roster else {}
        served = self.repo.served_districts(None) if roster else {}
        cases = self.repo.cases_by_district() if roster else {}
        involvement: dict[uuid.UUID, dict[uuid.UUID, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        for incident_id, manager_id, status in self.repo.involvement(
            [i.id for i in self.incidents]
        ):
            involvement[incident_id][manager_id].add(status)
            if status in OPEN_ASSIGNMENT_STATUSES:
                self.open_on.add(incident_id)

        base: dict[uuid.UUID, ManagerFacts] = {}
        valid: dict[uuid.UUID, frozenset[str]] = {}
        by_district: dict[str, list[uuid.UUID]] = defaultdict(list)
        free: dict[uuid.UUID, int] = {}
        for m in roster:
            holdings = tuple(competences.get(m.id, ()))
            districts = frozenset(served.get(m.id, ()))
            base[m.id] = ManagerFacts(
                id=m.id,
                display_name=m.display_name,
                status=m.status,
                home_district=m.home_district,
                districts=districts,
                languages=frozenset(m.languages or ()),
                max_open_assignments=m.max_open_assignments,
                competences=holdings,
                open_assignments=m.open_assignments,
                last_assigned_at=m.last_assigned_at,
            )
            valid[m.id] = frozenset(h.code for h in holdings if _valid(h, self.today))
            for district in {m.home_district, *districts}:
                by_district[district].append(m.id)
            free[m.id] = m.max_open_assignments - m.open_assignments
            self.names[m.id] = m.display_name

        self.valid = valid

        def pool(
            district: str, incident: IncidentFacts, skip: frozenset[uuid.UUID] = frozenset()
        ) -> list[ManagerFacts]:
            in_district = cases.get(incident.district, {})
            history = involvement.get(incident.id, {})
            result = []
            for manager_id in by_district.get(district, ()):
                if manager_id in skip or not incident.required_competences <= valid[manager_id]:
                    continue
                facts_m = base[manager_id]
                earlier = in_district.get(manager_id, 0)
                statuses = history.get(manager_id)
                if statuses:
                    earlier -= sum(1 for s in statuses if s in ("accepted", "completed"))
                if earlier or statuses:
                    facts_m = dataclasses.replace(
                        facts_m,
                        earlier_cases_in_district=max(earlier, 0),
                        statuses_on_incident=frozenset(statuses or ()),
                    )
                result.append(facts_m)
            return result

        # Incidents alike in district, competences and languages, without history, share one
        # ranking (and its candidate pairs, and its lookup by manager).
        shared: dict[tuple[Any, ...], _Shared] = {}
        candidates_by_incident: dict[uuid.UUID, list[tuple[uuid.UUID, float]]] = {}
        batch: list[BatchIncident] = []
        for incident in self.incidents:
            f = facts[incident.id]
            if incident.id in self.open_on:
                ranked: _Shared = ([], {})  # holds an open assignment already: not a batch case
            elif incident.id in involvement:
                ranked = self._shared(self._rank(f, pool))
            else:
                key = (f.district, f.required_competences, f.languages)
                if key not in shared:
                    shared[key] = self._shared(self._rank(f, pool))
                ranked = shared[key]
            candidates_by_incident[incident.id], self.chosen[incident.id] = ranked
            batch.append(BatchIncident(incident.id, 2 if self.service.is_tandem(incident) else 1))
        return plan_batch(batch, candidates_by_incident, free)

    @staticmethod
    def _shared(ranked: list[Candidate]) -> _Shared:
        return [(c.manager_id, c.score) for c in ranked], {c.manager_id: c for c in ranked}

    def _rank(self, facts: IncidentFacts, pool) -> list[Candidate]:  # type: ignore[no-untyped-def]
        home = pool(facts.district, facts)
        ranking = rank_candidates(
            facts, home, self.today, fallback_neighbours=False, now=self.now, valid=self.valid
        )
        if ranking.candidates or not facts.neighbours:
            return ranking.candidates
        seen = frozenset(m.id for m in home)
        wider = list(home)
        for neighbour in sorted(facts.neighbours):
            extra = pool(neighbour, facts, seen)
            wider.extend(extra)
            seen = seen | {m.id for m in extra}
        return rank_candidates(
            facts, wider, self.today, fallback_neighbours=True, now=self.now, valid=self.valid
        ).candidates


def _valid(holding: CompetenceHolding, today: date) -> bool:
    return competence_valid(holding, today)
