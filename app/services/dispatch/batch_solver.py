"""The exact solver behind :func:`app.services.dispatch.batch.plan_batch`, per independent
component: the assignment relaxation, the best-first branch and bound that repairs the tandem
rules, the HiGHS mixed-integer program for scarce capacity and the drop-and-re-solve fallback
(the method is described in :mod:`app.services.dispatch.batch`)."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

from app.services.dispatch.batch_types import (
    BoolArray,
    FloatArray,
    IntArray,
)


@dataclass(frozen=True, slots=True)
class _Pairs:
    """Candidate pairs: incident index, manager index, quantised score."""

    incident: IntArray
    manager: IntArray
    quantum: IntArray

    def subset(self, selector: IntArray) -> _Pairs:
        return _Pairs(self.incident[selector], self.manager[selector], self.quantum[selector])


def _components(pairs: _Pairs, n_incidents: int, n_managers: int) -> list[_Pairs]:
    """Split the candidate pairs into independent components (shared managers link incidents)."""
    size = n_incidents + n_managers
    graph = coo_matrix(
        (
            np.ones(len(pairs.incident), dtype=np.int8),
            (pairs.incident, n_incidents + pairs.manager),
        ),
        shape=(size, size),
    )
    _, labels = connected_components(graph, directed=False)
    pair_label = labels[pairs.incident]
    order = np.argsort(pair_label, kind="stable")
    bounds = np.flatnonzero(np.diff(pair_label[order])) + 1
    return [pairs.subset(part) for part in np.split(order, bounds)]


@dataclass(frozen=True, slots=True)
class _Node:
    """Branch-and-bound restrictions: forbidden (row, manager) pairs, empty and full tandems."""

    forbidden: frozenset[tuple[int, int]] = frozenset()
    empty: frozenset[int] = frozenset()
    full: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class _Relaxation:
    cost: float
    row_manager: IntArray  # local manager per row, -1 for an empty slot
    row_cost: FloatArray


@dataclass(frozen=True, slots=True)
class _Component:
    """One component: its pairs in local indices and the assignment-problem edges built on them.

    Costs are integers held in float64, exact: they stay far below 2**53.
    """

    incidents: IntArray  # global incident index per local incident
    managers: IntArray  # global manager index per local manager
    needed: IntArray  # slots needed per local incident
    row_start: IntArray  # first row per local incident
    tandems: IntArray  # local indices of tandem incidents
    columns: IntArray  # slot columns per local manager
    big: int  # B in the module docstring
    pair_incident: IntArray  # local incident per candidate pair
    pair_manager: IntArray  # local manager per candidate pair
    pair_quantum: IntArray
    pair_key: IntArray  # sorted incident·n_managers + manager, for looking up quanta
    key_quantum: IntArray  # quantum per pair_key
    edge_row: IntArray
    edge_column: IntArray
    edge_manager: IntArray  # local manager per edge
    edge_cost: FloatArray
    column_manager: IntArray  # local manager per slot column

    @classmethod
    def build(cls, pairs: _Pairs, slots_needed: IntArray, capacity: IntArray) -> _Component:
        incidents, pair_incident = np.unique(pairs.incident, return_inverse=True)
        managers, pair_manager = np.unique(pairs.manager, return_inverse=True)
        needed = slots_needed[incidents]
        row_start = _starts(needed)
        # A manager never needs more columns than incidents listing them (one per incident).
        listed = np.bincount(pair_manager, minlength=len(managers))
        columns = np.minimum(capacity[managers], listed)
        column_start = _starts(columns)
        max_columns = int(columns.max())
        big = int(needed.sum()) * max_columns + 1

        rows: list[IntArray] = []
        cols: list[IntArray] = []
        owners: list[IntArray] = []
        costs: list[FloatArray] = []
        for side in range(2):
            on_side = np.flatnonzero(needed[pair_incident] > side)
            for slot in range(max_columns):
                selected = on_side[columns[pair_manager[on_side]] > slot]
                rows.append(row_start[pair_incident[selected]] + side)
                cols.append(column_start[pair_manager[selected]] + slot)
                owners.append(pair_manager[selected])
                costs.append(
                    (-pairs.quantum[selected] * big + (slot - max_columns)).astype(np.float64)
                )
        keys = pair_incident * len(managers) + pair_manager
        key_order = np.argsort(keys)
        return cls(
            incidents=incidents,
            managers=managers,
            needed=needed,
            row_start=row_start,
            tandems=np.flatnonzero(needed == 2),
            columns=columns,
            big=big,
            pair_incident=pair_incident.astype(np.int64),
            pair_manager=pair_manager.astype(np.int64),
            pair_quantum=pairs.quantum,
            pair_key=keys[key_order].astype(np.int64),
            key_quantum=pairs.quantum[key_order],
            edge_row=np.concatenate(rows),
            edge_column=np.concatenate(cols),
            edge_manager=np.concatenate(owners),
            edge_cost=np.concatenate(costs),
            column_manager=np.repeat(np.arange(len(managers), dtype=np.int64), columns),
        )

    @property
    def n_rows(self) -> int:
        return int(self.needed.sum())

    @property
    def n_slot_columns(self) -> int:
        return int(self.columns.sum())

    @property
    def max_columns(self) -> int:
        return int(self.columns.max())

    def rows_of(self, local_incident: int) -> tuple[int, int]:
        start = int(self.row_start[local_incident])
        return start, start + 1

    def relax(self, node: _Node) -> _Relaxation | None:
        """Optimum of the assignment relaxation under ``node``; ``None`` when infeasible."""
        n_rows, n_slots, n_managers = self.n_rows, self.n_slot_columns, len(self.managers)
        keep = np.ones(len(self.edge_row), dtype=np.bool_)
        if node.forbidden:
            keys = self.edge_row * n_managers + self.edge_manager
            forbidden = np.fromiter(
                (row * n_managers + manager for row, manager in node.forbidden), dtype=np.int64
            )
            keep &= ~np.isin(keys, forbidden)
        if node.empty:
            keep &= ~self._rows_mask(node.empty)[self.edge_row]
        dummy_rows = np.arange(n_rows, dtype=np.int64)
        if node.full:
            dummy_rows = dummy_rows[~self._rows_mask(node.full)]
        offset = 1.0 - float(self.edge_cost.min())  # LAPJVsp wants non-zero weights
        matrix = csr_matrix(
            (
                np.concatenate([self.edge_cost[keep], np.zeros(len(dummy_rows))]) + offset,
                (
                    np.concatenate([self.edge_row[keep], dummy_rows]),
                    np.concatenate([self.edge_column[keep], n_slots + dummy_rows]),
                ),
            ),
            shape=(n_rows, n_slots + n_rows),
        )
        try:
            row_index, column_index = min_weight_full_bipartite_matching(matrix)
        except ValueError:  # a tandem forced full cannot get two distinct managers here
            return None
        row_cost = np.zeros(n_rows, dtype=np.float64)
        row_cost[row_index] = np.asarray(matrix[row_index, column_index]).ravel() - offset
        row_manager = np.full(n_rows, -1, dtype=np.int64)
        real = column_index < n_slots
        row_manager[row_index[real]] = self.column_manager[column_index[real]]
        return _Relaxation(float(row_cost.sum()), row_manager, row_cost)

    def plan_cost(self, row_manager: IntArray) -> float:
        """Cost of a plan (local manager per row, -1 empty) under the module's objective."""
        filled = np.flatnonzero(row_manager >= 0)
        row_incident = np.repeat(np.arange(len(self.needed), dtype=np.int64), self.needed)
        keys = row_incident[filled] * len(self.managers) + row_manager[filled]
        position = np.searchsorted(self.pair_key, keys)
        score_part = -int(self.key_quantum[position].sum()) * self.big
        load = np.bincount(row_manager[filled], minlength=len(self.managers))
        # A manager holding L slots uses slot columns 0 … L-1: Σ (slot − J).
        slot_part = int((load * (load - 1) // 2 - load * self.max_columns).sum())
        return float(score_part + slot_part)

    def _rows_mask(self, local_incidents: frozenset[int]) -> BoolArray:
        mask = np.zeros(self.n_rows, dtype=np.bool_)
        for local in local_incidents:
            mask[list(self.rows_of(local))] = True
        return mask


def _starts(counts: IntArray) -> IntArray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _branch_and_bound(component: _Component, max_nodes: int) -> tuple[IntArray, bool]:
    """Best-first branch and bound over assignment relaxations: best plan found, proven?"""
    root = component.relax(_Node())
    if root is None:  # pragma: no cover - leaving every slot empty is always possible
        raise AssertionError("the unrestricted relaxation is always feasible")
    incumbent_cost, incumbent = _repair(component, root)
    counter = itertools.count()
    queue: list[tuple[float, int, _Node, _Relaxation]] = [(root.cost, next(counter), _Node(), root)]
    solved = 1
    while queue:
        bound, _, node, relaxation = heapq.heappop(queue)
        if bound >= incumbent_cost:
            return incumbent, True  # nothing left can beat the incumbent
        children = _branch(component, node, relaxation)
        # A feasible relaxed optimum is its own repair, so it already is the incumbent and the
        # check above has ended the search: this node breaks a tandem rule.
        assert children is not None
        for child in children:
            if solved >= max_nodes:
                return incumbent, False
            solved += 1
            child_relaxation = component.relax(child)
            if child_relaxation is None or child_relaxation.cost >= incumbent_cost:
                continue
            repaired_cost, repaired = _repair(component, child_relaxation)
            if repaired_cost < incumbent_cost:
                incumbent_cost, incumbent = repaired_cost, repaired
            heapq.heappush(queue, (child_relaxation.cost, next(counter), child, child_relaxation))
    return incumbent, True


def _tandem_managers(component: _Component, relaxation: _Relaxation, local: int) -> tuple[int, int]:
    row_a, row_b = component.rows_of(local)
    return int(relaxation.row_manager[row_a]), int(relaxation.row_manager[row_b])


def _repair(component: _Component, relaxation: _Relaxation) -> tuple[float, IntArray]:
    """Feasible plan from a relaxed one: empty every tandem incident that breaks a tandem rule."""
    rows = relaxation.row_manager.copy()
    cost = relaxation.cost
    for local in (int(t) for t in component.tandems):
        manager_a, manager_b = _tandem_managers(component, relaxation, local)
        if manager_a == manager_b or (manager_a < 0) != (manager_b < 0):
            for row in component.rows_of(local):
                cost -= float(relaxation.row_cost[row])
                rows[row] = -1
    # Emptied slots may leave a manager's higher slot column in use: price the plan exactly.
    return component.plan_cost(rows) if cost != relaxation.cost else cost, rows


def _branch(component: _Component, node: _Node, relaxation: _Relaxation) -> list[_Node] | None:
    """Children that exclude the relaxed solution's tandem violations; ``None`` if it has none."""
    free_fixes: set[tuple[int, int]] = set()
    split: list[_Node] | None = None
    for local in (int(t) for t in component.tandems):
        manager_a, manager_b = _tandem_managers(component, relaxation, local)
        row_a, row_b = component.rows_of(local)
        if manager_a >= 0 and manager_a == manager_b:
            # The manager must keep to one row. Restricting them to a row no other manager is
            # restricted to loses no plan (swap the two rows), so then no split is needed.
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


def _solve_milp(
    component: _Component, incumbent: IntArray, time_limit: float | None
) -> tuple[IntArray, bool]:
    """Solve the component exactly as a MILP; keep ``incumbent`` if HiGHS finds nothing better.

    Variables: x per candidate pair (binary), y per tandem incident (binary), z per manager slot
    column (continuous, the slot tie-break). The objective is the module's, divided by B.
    """
    n_pairs = len(component.pair_incident)
    n_incidents = len(component.needed)
    n_tandems = len(component.tandems)
    n_columns = component.n_slot_columns
    n_vars = n_pairs + n_tandems + n_columns
    slot_of_column = np.arange(n_columns) - np.repeat(_starts(component.columns), component.columns)
    objective = np.concatenate(
        [
            -component.pair_quantum.astype(np.float64),
            np.zeros(n_tandems),
            (slot_of_column - component.max_columns) / component.big,
        ]
    )
    pair_vars = np.arange(n_pairs)
    tandem_vars = n_pairs + np.arange(n_tandems)
    column_vars = n_pairs + n_tandems + np.arange(n_columns)
    # Per incident: Σ x ≤ 1 (single) or Σ x − 2·y = 0 (tandem).
    incident_rows = coo_matrix(
        (
            np.concatenate([np.ones(n_pairs), np.full(n_tandems, -2.0)]),
            (
                np.concatenate([component.pair_incident, component.tandems]),
                np.concatenate([pair_vars, tandem_vars]),
            ),
        ),
        shape=(n_incidents, n_vars),
    )
    tandem = component.needed == 2
    # Per manager: Σ x − Σ z = 0, with z ≤ 1 per slot column (so Σ x ≤ columns ≤ free slots).
    manager_rows = coo_matrix(
        (
            np.concatenate([np.ones(n_pairs), -np.ones(n_columns)]),
            (
                np.concatenate([component.pair_manager, component.column_manager]),
                np.concatenate([pair_vars, column_vars]),
            ),
        ),
        shape=(len(component.managers), n_vars),
    )
    result = milp(
        objective,
        constraints=[
            # (A, lb, ub): milp's own form for bounds given per row (LinearConstraint's
            # signature types them as scalars)
            (incident_rows, np.where(tandem, 0.0, -np.inf), np.where(tandem, 0, 1)),
            LinearConstraint(manager_rows, 0.0, 0.0),
        ],
        integrality=np.concatenate([np.ones(n_pairs + n_tandems), np.zeros(n_columns)]),
        bounds=Bounds(0.0, 1.0),
        options={"mip_rel_gap": 0.0}
        if time_limit is None
        else {"mip_rel_gap": 0.0, "time_limit": time_limit},
    )
    if result.x is None:  # time limit hit before HiGHS found any plan
        return incumbent, False
    taken = np.flatnonzero(result.x[:n_pairs] > 0.5)
    rows = np.full(component.n_rows, -1, dtype=np.int64)
    filled = np.zeros(n_incidents, dtype=np.int64)
    for pair in taken:
        local = int(component.pair_incident[pair])
        rows[int(component.row_start[local]) + int(filled[local])] = component.pair_manager[pair]
        filled[local] += 1
    proven = bool(result.status == 0)
    if component.plan_cost(rows) > component.plan_cost(incumbent):
        return incumbent, False
    return rows, proven


def _better(component: _Component, first: IntArray, second: IntArray) -> IntArray:
    return second if component.plan_cost(second) < component.plan_cost(first) else first


def _drop_and_resolve(component: _Component) -> IntArray:
    """Heuristic plan: re-solve with rule-breaking tandems emptied until none breaks a rule.

    A manager on both rows of a tandem is kept off its second row instead. Each round restricts
    something new, so this ends after at most (tandems + managers per tandem) rounds.
    """
    node = _Node()
    while True:
        relaxation = component.relax(node)
        if relaxation is None:  # pragma: no cover - nothing is forced full here
            raise AssertionError("a relaxation without full tandems is always feasible")
        forbidden = set(node.forbidden)
        empty = set(node.empty)
        for local in (int(t) for t in component.tandems):
            manager_a, manager_b = _tandem_managers(component, relaxation, local)
            if manager_a >= 0 and manager_a == manager_b:
                forbidden.add((component.rows_of(local)[1], manager_a))
            elif (manager_a < 0) != (manager_b < 0):
                empty.add(local)
        if len(forbidden) == len(node.forbidden) and len(empty) == len(node.empty):
            return relaxation.row_manager
        node = _Node(frozenset(forbidden), frozenset(empty), node.full)
