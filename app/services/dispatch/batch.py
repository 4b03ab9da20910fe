"""Globally optimal batch dispatch (DESIGN §2 ``POST /dispatch/auto``), as a pure function.

:func:`plan_batch` assigns incidents to managers so that the **total score is maximal** over all
feasible plans. A plan is feasible when

* every assigned pair comes from the incident's candidate list (eligibility is the caller's job,
  e.g. :func:`app.services.dispatch.matching.rank_candidates`),
* no manager gets more assignments than their free slots,
* a single incident (``slots_needed=1``) gets at most one manager, and a tandem incident
  (``slots_needed=2``) gets two *distinct* managers or none (both slots or none).

Objective. Rows are incident slots (one per single incident, two per tandem incident); columns
are manager slots (a manager with *k* free slots gets ``min(k, incidents listing them)`` columns)
plus one dummy column per row (cost 0: the slot stays empty, so a partial plan is still
returned). The cost of row → manager slot *j* is ``-q·B + (j − J)`` where ``q = round(score·10⁴)``
(scores are compared at the 4-decimal resolution ``rank_candidates`` produces), *J* is the largest
slot count and ``B = rows·J + 1``. The slot term of a whole plan stays below *B* in magnitude, so
it never outweighs a score difference: it is a pure tie-break that, among plans of equal total
score, prefers filling a slot over leaving it empty and a manager's lower slot indices, i.e.
spreads load. (Load already weighs in every score through the ``load`` factor.)

Solving, per independent component (incidents linked through shared managers), exactly:

1. The relaxation without the two tandem rules is a linear assignment problem, solved with
   :func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp, the sparse twin of
   :func:`scipy.optimize.linear_sum_assignment`; at 1,000 incidents × 5,000 managers a dense
   matrix would hold ~10⁷ cells, the sparse one only the candidate pairs). Its optimum bounds
   every feasible plan. When its solution breaks a tandem rule, a best-first branch and bound
   repairs it: one manager on both rows of a tandem incident is restricted to one row (while one
   row has no restricted manager yet this loses no plan — the rows are interchangeable — so no
   split is needed, otherwise two children); a half-filled tandem incident splits into "no slot" /
   "both slots". Children only drop infeasible plans (or mirror images), so the search may stop
   as soon as no open node's bound beats the best feasible plan found (a feasible relaxed optimum
   is one): that plan is optimal. With plenty of capacity this takes two or three relaxations.
2. When that search needs more than ``max_branch_nodes`` relaxations (scarce capacity: many
   half-filled tandems), the component is solved as a mixed-integer program with HiGHS
   (:func:`scipy.optimize.milp`): a binary per candidate pair, a binary per tandem incident with
   ``Σ pairs = 2·tandem``, ``Σ pairs ≤ 1`` per single incident, and per manager continuous slot
   variables carrying the same slot tie-break. HiGHS proves optimality unless its
   ``milp_time_limit`` (a resource guard, default 10 s) runs out; then the best plan found — by
   HiGHS, the branch and bound or the drop-and-re-solve heuristic below — is returned and
   :attr:`BatchPlan.optimal` is ``False``. Scarce capacity with long candidate lists is the hard
   regime (600 managers for 1,000 incidents with 100 candidates each: HiGHS took 10–40 s on a
   busy 2-core machine); plentiful capacity, the scale target, closes in stage 1.

Why not "solve, drop half-filled tandem incidents, re-solve"? That iteration is not optimal: a
tandem incident can be worth more than the single incident that took its second manager (e.g. T
with A 0.9 / B 0.1 and S with B 0.95, A and B one slot each: the iteration returns S alone, 0.95;
the optimum is T with A and B, 1.0). Here it only supplies fallback plans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

import numpy as np

from app.services.dispatch.batch_solver import (
    _better,
    _branch_and_bound,
    _Component,
    _components,
    _drop_and_resolve,
    _Pairs,
    _solve_milp,
)
from app.services.dispatch.batch_types import (
    DEFAULT_MAX_BRANCH_NODES,
    DEFAULT_MILP_TIME_LIMIT,
    SCORE_SCALE,
    IntArray,
)

Role = Literal["lead", "co"]
UnassignedReason = Literal["no_candidate", "no_tandem_partner"]

_ROLES: Final[tuple[Role, Role]] = ("lead", "co")


@dataclass(frozen=True, slots=True)
class BatchIncident:
    """An incident to dispatch: ``slots_needed`` is 1 (lead only) or 2 (tandem: lead and co)."""

    id: UUID
    slots_needed: int = 1


@dataclass(frozen=True, slots=True)
class PlannedAssignment:
    incident_id: UUID
    manager_id: UUID
    role: Role
    score: float


@dataclass(frozen=True, slots=True)
class UnassignedIncident:
    """An incident the plan leaves empty.

    ``no_candidate``: a single incident with no candidate left for it (none eligible with a free
    slot, or every one is better used elsewhere), or a tandem incident with no candidate at all;
    ``no_tandem_partner``: a tandem incident with candidates that could not get two distinct ones.
    """

    incident_id: UUID
    reason: UnassignedReason


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Assignments in incident input order (lead before co); unassigned incidents likewise.

    ``optimal`` is ``False`` only when a solver limit was hit before optimality was proven.
    """

    assignments: list[PlannedAssignment]
    unassigned: list[UnassignedIncident]
    optimal: bool = True

    @property
    def total_score(self) -> float:
        return sum(a.score for a in self.assignments)


def plan_batch(
    incidents: Sequence[BatchIncident],
    candidates_by_incident: Mapping[UUID, Sequence[tuple[UUID, float]]],
    free_slots: Mapping[UUID, int],
    *,
    max_branch_nodes: int = DEFAULT_MAX_BRANCH_NODES,
    milp_time_limit: float | None = DEFAULT_MILP_TIME_LIMIT,
) -> BatchPlan:
    """Plan the assignment of ``incidents`` that maximises the total score (module docstring).

    ``candidates_by_incident`` maps an incident id to its eligible ``(manager_id, score)`` pairs,
    scores in [0, 1]; a manager listed twice counts once, with the higher score. Managers without
    a positive entry in ``free_slots`` are ignored.
    """
    if max_branch_nodes < 1:
        raise ValueError("max_branch_nodes must be at least 1")
    if milp_time_limit is not None and milp_time_limit <= 0:
        raise ValueError("milp_time_limit must be positive")
    seen: set[UUID] = set()
    for incident in incidents:
        if incident.slots_needed not in (1, 2):
            raise ValueError(f"slots_needed must be 1 or 2, got {incident.slots_needed}")
        if incident.id in seen:
            raise ValueError(f"incident {incident.id} is listed twice")
        seen.add(incident.id)

    usable: list[dict[UUID, float]] = []
    # Incidents that share one candidate list (the planner ranks alike incidents once) share
    # its options too: the same dict, built once (read-only from here on).
    shared: dict[int, dict[UUID, float]] = {}
    for incident in incidents:
        listed = candidates_by_incident.get(incident.id, ())
        options = shared.get(id(listed))
        if options is None:
            options = {}
            for manager_id, score in listed:
                if not 0.0 <= score <= 1.0:
                    raise ValueError(f"score {score!r} is outside [0, 1]")
                if free_slots.get(manager_id, 0) > 0:
                    options[manager_id] = max(score, options.get(manager_id, score))
            shared[id(listed)] = options
        usable.append(options)

    chosen, optimal = _optimise(
        incidents,
        usable,
        free_slots,
        max_branch_nodes=max_branch_nodes,
        milp_time_limit=milp_time_limit,
    )

    assignments: list[PlannedAssignment] = []
    unassigned: list[UnassignedIncident] = []
    for index, incident in enumerate(incidents):
        picked = chosen.get(index)
        scores = usable[index]
        if picked:
            ordered = sorted(picked, key=lambda m: (-scores[m], m))
            for role, manager_id in zip(_ROLES, ordered, strict=False):
                assignments.append(
                    PlannedAssignment(incident.id, manager_id, role, scores[manager_id])
                )
        elif incident.slots_needed == 2 and scores:
            unassigned.append(UnassignedIncident(incident.id, "no_tandem_partner"))
        else:
            unassigned.append(UnassignedIncident(incident.id, "no_candidate"))
    return BatchPlan(assignments=assignments, unassigned=unassigned, optimal=optimal)


def _optimise(
    incidents: Sequence[BatchIncident],
    usable: list[dict[UUID, float]],
    free_slots: Mapping[UUID, int],
    *,
    max_branch_nodes: int,
    milp_time_limit: float | None,
) -> tuple[dict[int, list[UUID]], bool]:
    """Incident index → chosen manager ids, and whether every component was proven optimal."""
    # Incidents that cannot be served whatever the others do take no part.
    solvable = [
        i for i, incident in enumerate(incidents) if len(usable[i]) >= incident.slots_needed
    ]
    if not solvable:
        return {}, True
    # Shared option dicts (plan_batch) are converted once; the pairs keep their order: incidents
    # in input order, each incident's options in their dict's order.
    distinct = {id(usable[i]): usable[i] for i in solvable}
    manager_ids = sorted({m for options in distinct.values() for m in options})
    manager_index = {m: k for k, m in enumerate(manager_ids)}
    converted: dict[int, tuple[IntArray, IntArray]] = {
        key: (
            np.fromiter((manager_index[m] for m in options), dtype=np.int64, count=len(options)),
            np.fromiter(
                (round(score * SCORE_SCALE) for score in options.values()),
                dtype=np.int64,
                count=len(options),
            ),
        )
        for key, options in distinct.items()
    }
    parts = [converted[id(usable[i])] for i in solvable]
    pairs = _Pairs(
        incident=np.repeat(
            np.asarray(solvable, dtype=np.int64), [len(usable[i]) for i in solvable]
        ),
        manager=np.concatenate([managers for managers, _ in parts]),
        quantum=np.concatenate([quanta for _, quanta in parts]),
    )
    slots_needed = np.asarray([incident.slots_needed for incident in incidents], dtype=np.int64)
    capacity = np.asarray([free_slots[m] for m in manager_ids], dtype=np.int64)

    chosen: dict[int, list[UUID]] = {}
    optimal = True
    for part in _components(pairs, len(incidents), len(manager_ids)):
        component = _Component.build(part, slots_needed, capacity)
        rows, proven = _branch_and_bound(component, max_branch_nodes)
        if not proven:
            rows = _better(component, rows, _drop_and_resolve(component))
            rows, proven = _solve_milp(component, rows, milp_time_limit)
        optimal = optimal and proven
        for local, incident in enumerate(component.incidents):
            start = int(component.row_start[local])
            picked = rows[start : start + int(component.needed[local])]
            managers = [manager_ids[int(component.managers[m])] for m in picked if m >= 0]
            if managers:
                chosen[int(incident)] = managers
    return chosen, optimal
