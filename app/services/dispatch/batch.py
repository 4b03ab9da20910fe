"""Globally optimal batch dispatch (DESIGN §2 ``POST /dispatch/auto``), as a pure function.

:func:`plan_batch` assigns incidents to managers so that the **total score is maximal** over all
feasible plans. A plan is feasible when

* every assigned pair comes from the incident's candidate list (eligibility is the caller's job,
  e.g. :func:`app.services.dispatch.matching.rank_candidates`),
* no manager gets more assignments than their free slots,
* a single incident (``slots_needed=1``) gets at most one manager, and a tandem incident
  (``slots_needed=2``) gets two *distinct* managers or none (both slots or none).

Formulation. Rows are incident slots (one per single incident, two per tandem incident); columns
are manager slots (a manager with *k* free slots gets ``min(k, incidents listing them)`` columns)
plus one dummy column per row (cost 0: the slot stays empty, so a partial plan is still
returned). The cost of row → manager slot *j* is ``-q·B + (j − J)`` where ``q = round(score·10⁴)``
(scores are compared at the 4-decimal resolution :func:`rank_candidates` produces), *J* is the
largest slot count and ``B = rows·J + 1``. Because the slot term of a whole plan stays below *B*
in magnitude, it can never outweigh a score difference: it is a pure tie-break that, among plans
of equal total score, prefers filling a slot over leaving it empty and a manager's lower slot
indices, i.e. spreads load. (Load already weighs in each score via the ``load`` factor.)

Solving. The relaxation without the two tandem rules is a linear assignment problem, solved with
:func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp, the sparse twin of
:func:`scipy.optimize.linear_sum_assignment`: at 1,000 incidents × 5,000 managers the dense matrix
would hold ~10⁷ cells, the sparse one only the candidate pairs). Its optimum bounds every feasible
plan. If its solution breaks a tandem rule, a best-first branch and bound restores it:

* one manager on both rows of a tandem incident → the manager is restricted to one of the two
  rows. While one row has no restricted managers yet, this loses no feasible plan (the rows are
  interchangeable), so no branching is needed; otherwise two children (this row / that row);
* a tandem incident with exactly one slot filled → two children: it gets no slot / both slots.

Each branch only removes infeasible plans (or symmetric copies), every node is solved exactly,
and the search stops at the first node whose relaxed optimum is feasible — which is therefore
optimal. Dropping half-filled tandem incidents and re-solving (the obvious iterative repair) is
*not* optimal: a tandem incident may be worth more than the single incident that took its second
manager; the repair is used only to supply incumbents for pruning. The problem is split into
independent components (incidents linked through shared managers) first, so unrelated conflicts
do not multiply the search. ``max_nodes`` bounds the relaxations solved per component; when it
is hit the best feasible plan found is returned and :attr:`BatchPlan.optimal` is ``False``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

Role = Literal["lead", "co"]
UnassignedReason = Literal["no_candidate", "no_tandem_partner"]

SCORE_SCALE: Final = 10_000
"""Scores are compared at a resolution of 1/SCORE_SCALE (4 decimals)."""
DEFAULT_MAX_NODES: Final = 2_000
"""Relaxations solved per component before settling for the best feasible plan found."""
_ROLES: Final[tuple[Role, Role]] = ("lead", "co")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


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
    """Assignments in incident input order (lead before co); unassigned incidents likewise."""

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
    max_nodes: int = DEFAULT_MAX_NODES,
) -> BatchPlan:
    """Plan the assignment of ``incidents`` that maximises the total score (module docstring).

    ``candidates_by_incident`` maps an incident id to its eligible ``(manager_id, score)`` pairs,
    scores in [0, 1]; a manager listed twice counts once with the higher score. Managers without
    a positive entry in ``free_slots`` are ignored.
    """
    if max_nodes < 1:
        raise ValueError("max_nodes must be at least 1")
    seen: set[UUID] = set()
    for incident in incidents:
        if incident.slots_needed not in (1, 2):
            raise ValueError(f"slots_needed must be 1 or 2, got {incident.slots_needed}")
        if incident.id in seen:
            raise ValueError(f"incident {incident.id} is listed twice")
        seen.add(incident.id)

    usable: list[dict[UUID, float]] = []
    for incident in incidents:
        options: dict[UUID, float] = {}
        for manager_id, score in candidates_by_incident.get(incident.id, ()):
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"score {score!r} is outside [0, 1]")
            if free_slots.get(manager_id, 0) > 0:
                options[manager_id] = max(score, options.get(manager_id, score))
        usable.append(options)

    # Incidents that cannot be served whatever the others do take no part in the optimisation.
    solvable = [
        index
        for index, incident in enumerate(incidents)
        if len(usable[index]) >= incident.slots_needed
    ]
    chosen: dict[int, list[UUID]] = {}
    optimal = True
    if solvable:
        manager_ids = sorted({m for index in solvable for m in usable[index]})
        manager_index = {m: i for i, m in enumerate(manager_ids)}
        edge_incident: list[int] = []
        edge_manager: list[int] = []
        edge_quantum: list[int] = []
        for index in solvable:
            for manager_id, score in usable[index].items():
                edge_incident.append(index)
                edge_manager.append(manager_index[manager_id])
                edge_quantum.append(round(score * SCORE_SCALE))
        edges = _Edges(
            incident=np.asarray(edge_incident, dtype=np.int64),
            manager=np.asarray(edge_manager, dtype=np.int64),
            quantum=np.asarray(edge_quantum, dtype=np.int64),
        )
        slots_needed = np.asarray([i.slots_needed for i in incidents], dtype=np.int64)
        capacity = np.asarray([free_slots[m] for m in manager_ids], dtype=np.int64)
        for component in _components(edges, len(incidents), len(manager_ids)):
            solution, proven = _solve_component(component, slots_needed, capacity, max_nodes)
            optimal = optimal and proven
            for index, managers in solution.items():
                chosen[index] = [manager_ids[m] for m in managers]

    assignments: list[PlannedAssignment] = []
    unassigned: list[UnassignedIncident] = []
    for index, incident in enumerate(incidents):
        picked = chosen.get(index)
        if picked:
            scores = usable[index]
            ordered = sorted(picked, key=lambda m: (-scores[m], m))
            for role, manager_id in zip(_ROLES, ordered, strict=False):
                assignments.append(
                    PlannedAssignment(incident.id, manager_id, role, scores[manager_id])
                )
        elif incident.slots_needed == 2 and usable[index]:
            unassigned.append(UnassignedIncident(incident.id, "no_tandem_partner"))
        else:
            unassigned.append(UnassignedIncident(incident.id, "no_candidate"))
    return BatchPlan(assignments=assignments, unassigned=unassigned, optimal=optimal)


@dataclass(frozen=True, slots=True)
class _Edges:
    """Candidate pairs: global incident index, global manager index, quantised score."""

    incident: IntArray
    manager: IntArray
    quantum: IntArray

    def subset(self, selector: IntArray) -> _Edges:
        return _Edges(self.incident[selector], self.manager[selector], self.quantum[selector])


def _components(edges: _Edges, n_incidents: int, n_managers: int) -> list[_Edges]:
    """Split the candidate pairs into independent components (shared managers link incidents)."""
    n_edges = len(edges.incident)
    graph = coo_matrix(
        (np.ones(n_edges, dtype=np.int8), (edges.incident, n_incidents + edges.manager)),
        shape=(n_incidents + n_managers, n_incidents + n_managers),
    )
    _, labels = connected_components(graph, directed=False)
    edge_label = labels[edges.incident]
    order = np.argsort(edge_label, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_label[order])) + 1
    return [edges.subset(part) for part in np.split(order, bounds)]


@dataclass(frozen=True, slots=True)
class _Node:
    """Branch-and-bound restrictions: forbidden (row, manager) pairs, empty and full tandems."""

    forbidden: frozenset[tuple[int, int]] = frozenset()
    empty: frozenset[int] = frozenset()
    full: frozenset[int] = frozenset()


@dataclass(slots=True)
class _Relaxation:
    cost: float
    row_manager: IntArray  # local manager per row, -1 for an empty slot
    row_cost: FloatArray


@dataclass(slots=True)
class _Component:
    """One component as a rectangular assignment problem, ready to solve under restrictions."""

    incidents: IntArray  # global incident index per local incident
    managers: IntArray  # global manager index per local manager
    row_start: IntArray  # first row of each local incident
    tandems: IntArray  # local indices of tandem incidents
    n_rows: int
    n_slot_columns: int
    edge_row: IntArray
    edge_column: IntArray
    edge_manager: IntArray  # local manager of each edge
    edge_cost: FloatArray
    column_manager: IntArray  # local manager per slot column
    offset: float

    def rows_of(self, local_incident: int) -> tuple[int, int]:
        start = int(self.row_start[local_incident])
        return start, start + 1

    def solve(self, node: _Node) -> _Relaxation | None:
        n_rows = self.n_rows
        keep = np.ones(len(self.edge_row), dtype=np.bool_)
        if node.forbidden:
            keys = self.edge_row * len(self.managers) + self.edge_manager
            forbidden = np.fromiter(
                (row * len(self.managers) + manager for row, manager in node.forbidden),
                dtype=np.int64,
            )
            keep &= ~np.isin(keys, forbidden)
        if node.empty:
            keep &= ~self._rows_mask(node.empty)[self.edge_row]
        dummy_rows = np.arange(n_rows, dtype=np.int64)
        if node.full:
            dummy_rows = dummy_rows[~self._rows_mask(node.full)]
        rows = np.concatenate([self.edge_row[keep], dummy_rows])
        columns = np.concatenate([self.edge_column[keep], self.n_slot_columns + dummy_rows])
        costs = np.concatenate([self.edge_cost[keep], np.zeros(len(dummy_rows))])
        matrix = csr_matrix(
            (costs + self.offset, (rows, columns)), shape=(n_rows, self.n_slot_columns + n_rows)
        )
        try:
            row_index, column_index = min_weight_full_bipartite_matching(matrix)
        except ValueError:  # a forced-full tandem cannot get two distinct managers here
            return None
        row_cost = np.zeros(n_rows, dtype=np.float64)
        row_cost[row_index] = np.asarray(matrix[row_index, column_index]).ravel() - self.offset
        row_manager = np.full(n_rows, -1, dtype=np.int64)
        real = column_index < self.n_slot_columns
        row_manager[row_index[real]] = self.column_manager[column_index[real]]
        return _Relaxation(float(row_cost.sum()), row_manager, row_cost)

    def _rows_mask(self, local_incidents: frozenset[int]) -> BoolArray:
        mask = np.zeros(self.n_rows, dtype=np.bool_)
        for local in local_incidents:
            mask[list(self.rows_of(local))] = True
        return mask


def _build_component(edges: _Edges, slots_needed: IntArray, capacity: IntArray) -> _Component:
    incidents, edge_incident = np.unique(edges.incident, return_inverse=True)
    managers, edge_manager = np.unique(edges.manager, return_inverse=True)
    needed = slots_needed[incidents]
    row_start = np.concatenate([[0], np.cumsum(needed)[:-1]]).astype(np.int64)
    n_rows = int(needed.sum())
    # A manager never needs more columns than incidents listing them (one slot per incident).
    listed = np.bincount(edge_manager, minlength=len(managers))
    columns = np.minimum(capacity[managers], listed)
    column_start = np.concatenate([[0], np.cumsum(columns)[:-1]]).astype(np.int64)
    max_columns = int(columns.max())
    big = n_rows * max_columns + 1

    parts_row: list[IntArray] = []
    parts_column: list[IntArray] = []
    parts_manager: list[IntArray] = []
    parts_cost: list[FloatArray] = []
    for side in range(2):
        on_side = np.flatnonzero(needed[edge_incident] > side)
        for slot in range(max_columns):
            selected = on_side[columns[edge_manager[on_side]] > slot]
            parts_row.append(row_start[edge_incident[selected]] + side)
            parts_column.append(column_start[edge_manager[selected]] + slot)
            parts_manager.append(edge_manager[selected])
            parts_cost.append(
                (-edges.quantum[selected] * big + (slot - max_columns)).astype(np.float64)
            )
    edge_cost = np.concatenate(parts_cost)
    return _Component(
        incidents=incidents,
        managers=managers,
        row_start=row_start,
        tandems=np.flatnonzero(needed == 2),
        n_rows=n_rows,
        n_slot_columns=int(columns.sum()),
        edge_row=np.concatenate(parts_row),
        edge_column=np.concatenate(parts_column),
        edge_manager=np.concatenate(parts_manager),
        edge_cost=edge_cost,
        column_manager=np.repeat(np.arange(len(managers), dtype=np.int64), columns),
        offset=float(-edge_cost.min()) + 1.0,
    )


def _solve_component(
    edges: _Edges, slots_needed: IntArray, capacity: IntArray, max_nodes: int
) -> tuple[dict[int, list[int]], bool]:
    """Best plan for one component: global incident index → global manager indices."""
    component = _build_component(edges, slots_needed, capacity)
    root = component.solve(_Node())
    if root is None:  # pragma: no cover - the root always has the all-empty matching
        raise AssertionError("the unrestricted relaxation is always feasible")

    incumbent_cost, incumbent_rows = _repair(component, root)
    counter = itertools.count()
    queue: list[tuple[float, int, _Node, _Relaxation]] = [(root.cost, next(counter), _Node(), root)]
    solved = 1
    proven = True
    while queue:
        bound, _, node, relaxation = heapq.heappop(queue)
        if bound >= incumbent_cost:
            break  # nothing left can beat the incumbent: it is optimal
        children = _branch(component, node, relaxation)
        if children is None:  # the relaxed optimum is feasible, hence optimal
            incumbent_cost, incumbent_rows = relaxation.cost, relaxation.row_manager
            break
        for child in children:
            if solved >= max_nodes:
                proven = False
                queue.clear()
                break
            solved += 1
            child_relaxation = component.solve(child)
            if child_relaxation is None or child_relaxation.cost >= incumbent_cost:
                continue
            repaired_cost, repaired_rows = _repair(component, child_relaxation)
            if repaired_cost < incumbent_cost:
                incumbent_cost, incumbent_rows = repaired_cost, repaired_rows
            heapq.heappush(queue, (child_relaxation.cost, next(counter), child, child_relaxation))

    solution: dict[int, list[int]] = {}
    for local, incident in enumerate(component.incidents):
        start = int(component.row_start[local])
        rows = incumbent_rows[start : start + int(slots_needed[incident])]
        picked = [int(component.managers[m]) for m in rows if m >= 0]
        if picked:
            solution[int(incident)] = picked
    return solution, proven


def _tandem_state(
    component: _Component, relaxation: _Relaxation, local: int
) -> tuple[int, int]:
    row_a, row_b = component.rows_of(local)
    return int(relaxation.row_manager[row_a]), int(relaxation.row_manager[row_b])


def _repair(component: _Component, relaxation: _Relaxation) -> tuple[float, IntArray]:
    """Feasible plan from a relaxed one: empty every tandem incident that breaks a tandem rule."""
    rows = relaxation.row_manager.copy()
    cost = relaxation.cost
    for local in component.tandems:
        manager_a, manager_b = _tandem_state(component, relaxation, int(local))
        if manager_a == manager_b or (manager_a < 0) != (manager_b < 0):
            for row in component.rows_of(int(local)):
                cost -= float(relaxation.row_cost[row])
                rows[row] = -1
    return cost, rows


def _branch(component: _Component, node: _Node, relaxation: _Relaxation) -> list[_Node] | None:
    """Children that exclude the relaxed solution's tandem violations; ``None`` if it has none."""
    free_fixes: set[tuple[int, int]] = set()
    split: list[_Node] | None = None
    for local in (int(t) for t in component.tandems):
        manager_a, manager_b = _tandem_state(component, relaxation, local)
        row_a, row_b = component.rows_of(local)
        if manager_a >= 0 and manager_a == manager_b:
            # The manager must keep to one row. Restricting them to a row that no other manager
            # is restricted to loses no plan (swap the two rows), so only then is no split needed.
            only_a = {m for r, m in node.forbidden if r == row_b}
            only_b = {m for r, m in node.forbidden if r == row_a}
            if not only_a:
                free_fixes.add((row_b, manager_a))
            elif not only_b:
                free_fixes.add((row_a, manager_a))
            elif split is None:
                split = [
                    _Node(node.forbidden | {(row_b, manager_a)}, node.empty, node.full),
                    _Node(node.forbidden | {(row_a, manager_a)}, node.empty, node.full),
                ]
        elif (manager_a < 0) != (manager_b < 0) and split is None:
            split = [
                _Node(node.forbidden, node.empty | {local}, node.full),
                _Node(node.forbidden, node.empty, node.full | {local}),
            ]
    if free_fixes:
        return [_Node(node.forbidden | free_fixes, node.empty, node.full)]
    return split
