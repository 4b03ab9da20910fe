"""Batch auto-dispatch planning (DESIGN §2 ``POST /dispatch/auto``): optimality and feasibility."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from uuid import UUID

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.dispatch import batch_solver
from app.services.dispatch.batch import SCORE_SCALE, BatchIncident, BatchPlan, plan_batch

Candidates = dict[UUID, list[tuple[UUID, float]]]


def incident_id(n: int) -> UUID:
    return UUID(int=1_000 + n)


def manager_id(n: int) -> UUID:
    return UUID(int=2_000 + n)


def quantum(score: float) -> int:
    return round(score * SCORE_SCALE)


def plan_quantum(plan: BatchPlan) -> int:
    return sum(quantum(a.score) for a in plan.assignments)


def assert_feasible(
    plan: BatchPlan,
    incidents: Sequence[BatchIncident],
    candidates: Mapping[UUID, Sequence[tuple[UUID, float]]],
    free: Mapping[UUID, int],
) -> None:
    """Capacity, eligibility, tandem all-or-nothing with distinct managers, one outcome each."""
    by_incident: dict[UUID, list[tuple[UUID, str, float]]] = {}
    for a in plan.assignments:
        by_incident.setdefault(a.incident_id, []).append((a.manager_id, a.role, a.score))
    load = Counter(a.manager_id for a in plan.assignments)
    assert all(count <= free.get(m, 0) for m, count in load.items())
    unassigned = [u.incident_id for u in plan.unassigned]
    assert len(unassigned) == len(set(unassigned))
    for incident in incidents:
        picked = by_incident.get(incident.id, [])
        assert (incident.id in unassigned) != bool(picked)
        eligible = dict(candidates.get(incident.id, []))
        for manager, _, score in picked:
            assert manager in eligible
            assert score == eligible[manager]
        if picked:
            assert len(picked) == incident.slots_needed
            assert len({m for m, _, _ in picked}) == len(picked)
            roles = [role for _, role, _ in picked]
            assert roles == ["lead", "co"][: len(picked)]
            assert picked[0][2] >= picked[-1][2]  # the higher-scoring manager leads


def brute_force_optimum(
    incidents: Sequence[BatchIncident],
    candidates: Mapping[UUID, Sequence[tuple[UUID, float]]],
    free: Mapping[UUID, int],
) -> int:
    """Best total score (in quanta) over every feasible plan, by enumeration."""
    options_per_incident = []
    for incident in incidents:
        eligible = [(m, s) for m, s in candidates.get(incident.id, []) if free.get(m, 0) > 0]
        options: list[tuple[tuple[UUID, float], ...]] = [()]
        options += list(itertools.combinations(eligible, incident.slots_needed))
        options_per_incident.append(options)
    best = 0
    for plan in itertools.product(*options_per_incident):
        load = Counter(m for option in plan for m, _ in option)
        if all(count <= free[m] for m, count in load.items()):
            best = max(best, sum(quantum(s) for option in plan for _, s in option))
    return best


@st.composite
def instances(
    draw: st.DrawFn,
) -> tuple[list[BatchIncident], Candidates, dict[UUID, int]]:
    n_incidents = draw(st.integers(1, 4))
    n_managers = draw(st.integers(1, 4))
    managers = [manager_id(m) for m in range(n_managers)]
    free = {m: draw(st.integers(0, 3)) for m in managers}
    incidents = [
        BatchIncident(incident_id(i), draw(st.sampled_from([1, 2]))) for i in range(n_incidents)
    ]
    candidates: Candidates = {}
    for incident in incidents:
        chosen = draw(st.lists(st.sampled_from(managers), unique=True, max_size=n_managers))
        candidates[incident.id] = [
            (m, draw(st.integers(0, SCORE_SCALE)) / SCORE_SCALE) for m in chosen
        ]
    return incidents, candidates, free


class TestOptimality:
    @settings(max_examples=250, deadline=None)
    @given(instance=instances())
    def test_matches_brute_force(
        self, instance: tuple[list[BatchIncident], Candidates, dict[UUID, int]]
    ) -> None:
        incidents, candidates, free = instance
        plan = plan_batch(incidents, candidates, free)
        assert plan.optimal
        assert_feasible(plan, incidents, candidates, free)
        assert plan_quantum(plan) == brute_force_optimum(incidents, candidates, free)

    @settings(max_examples=120, deadline=None)
    @given(instance=instances())
    def test_milp_stage_matches_brute_force(
        self, instance: tuple[list[BatchIncident], Candidates, dict[UUID, int]]
    ) -> None:
        # One relaxation only: every instance whose relaxation breaks a tandem rule goes to MILP.
        incidents, candidates, free = instance
        plan = plan_batch(incidents, candidates, free, max_branch_nodes=1)
        assert plan.optimal
        assert_feasible(plan, incidents, candidates, free)
        assert plan_quantum(plan) == brute_force_optimum(incidents, candidates, free)

    def test_a_tandem_can_outweigh_the_single_that_took_its_partner(self) -> None:
        # Dropping half-filled tandems and re-solving would give S alone (0.95); T with A and B
        # is worth 1.0.
        tandem, single = BatchIncident(incident_id(1), 2), BatchIncident(incident_id(2), 1)
        a, b = manager_id(1), manager_id(2)
        candidates = {tandem.id: [(a, 0.9), (b, 0.1)], single.id: [(b, 0.95)]}
        plan = plan_batch([tandem, single], candidates, {a: 1, b: 1})
        assert [(x.incident_id, x.manager_id, x.role) for x in plan.assignments] == [
            (tandem.id, a, "lead"),
            (tandem.id, b, "co"),
        ]
        assert [(u.incident_id, u.reason) for u in plan.unassigned] == [(single.id, "no_candidate")]
        assert plan.total_score == pytest.approx(1.0)

    def test_a_single_can_outweigh_a_tandem(self) -> None:
        tandem, single = BatchIncident(incident_id(1), 2), BatchIncident(incident_id(2), 1)
        a, b = manager_id(1), manager_id(2)
        candidates = {tandem.id: [(a, 0.2), (b, 0.1)], single.id: [(b, 0.95)]}
        plan = plan_batch([tandem, single], candidates, {a: 1, b: 1})
        assert [(x.incident_id, x.manager_id) for x in plan.assignments] == [(single.id, b)]
        assert [(u.incident_id, u.reason) for u in plan.unassigned] == [
            (tandem.id, "no_tandem_partner")
        ]

    def test_global_optimum_beats_greedy(self) -> None:
        # Greedy gives incident 1 its favourite A (0.9) and leaves 2 with B (0.1): 1.0.
        # Optimal: 1 → B (0.8), 2 → A (0.85): 1.65.
        first, second = BatchIncident(incident_id(1)), BatchIncident(incident_id(2))
        a, b = manager_id(1), manager_id(2)
        candidates = {first.id: [(a, 0.9), (b, 0.8)], second.id: [(a, 0.85), (b, 0.1)]}
        plan = plan_batch([first, second], candidates, {a: 1, b: 1})
        assert [(x.incident_id, x.manager_id) for x in plan.assignments] == [
            (first.id, b),
            (second.id, a),
        ]


class TestTandem:
    def test_one_manager_never_takes_both_slots(self) -> None:
        tandem = BatchIncident(incident_id(1), 2)
        a, b = manager_id(1), manager_id(2)
        plan = plan_batch([tandem], {tandem.id: [(a, 0.9), (b, 0.2)]}, {a: 2, b: 2})
        assert [(x.manager_id, x.role) for x in plan.assignments] == [(a, "lead"), (b, "co")]

    def test_only_one_candidate_means_no_tandem_partner(self) -> None:
        tandem = BatchIncident(incident_id(1), 2)
        a = manager_id(1)
        plan = plan_batch([tandem], {tandem.id: [(a, 0.9)]}, {a: 2})
        assert plan.assignments == []
        assert [(u.incident_id, u.reason) for u in plan.unassigned] == [
            (tandem.id, "no_tandem_partner")
        ]

    def test_no_candidate_at_all(self) -> None:
        tandem = BatchIncident(incident_id(1), 2)
        plan = plan_batch([tandem], {tandem.id: []}, {})
        assert [(u.incident_id, u.reason) for u in plan.unassigned] == [(tandem.id, "no_candidate")]

    def test_partner_taken_by_a_better_use(self) -> None:
        # Both tandems want A and B, who have one slot each: only one tandem gets them.
        first, second = BatchIncident(incident_id(1), 2), BatchIncident(incident_id(2), 2)
        a, b = manager_id(1), manager_id(2)
        candidates = {first.id: [(a, 0.5), (b, 0.5)], second.id: [(a, 0.6), (b, 0.6)]}
        plan = plan_batch([first, second], candidates, {a: 1, b: 1})
        assert {x.incident_id for x in plan.assignments} == {second.id}
        assert [(u.incident_id, u.reason) for u in plan.unassigned] == [
            (first.id, "no_tandem_partner")
        ]

    def test_lead_is_the_higher_score_and_ties_go_to_the_lower_id(self) -> None:
        tandem = BatchIncident(incident_id(1), 2)
        a, b = manager_id(1), manager_id(2)
        plan = plan_batch([tandem], {tandem.id: [(b, 0.7), (a, 0.7)]}, {a: 1, b: 1})
        assert [(x.manager_id, x.role) for x in plan.assignments] == [(a, "lead"), (b, "co")]


class TestCapacity:
    def test_free_slots_are_respected(self) -> None:
        incidents = [BatchIncident(incident_id(i)) for i in range(3)]
        a = manager_id(1)
        plan = plan_batch(incidents, {i.id: [(a, 0.9)] for i in incidents}, {a: 2})
        assert len(plan.assignments) == 2
        assert [u.reason for u in plan.unassigned] == ["no_candidate"]

    def test_manager_without_free_slots_is_ignored(self) -> None:
        single = BatchIncident(incident_id(1))
        a, unknown = manager_id(1), manager_id(9)
        plan = plan_batch([single], {single.id: [(a, 0.9), (unknown, 0.8)]}, {a: 0})
        assert plan.assignments == []
        assert [(u.incident_id, u.reason) for u in plan.unassigned] == [(single.id, "no_candidate")]

    def test_equal_scores_spread_load(self) -> None:
        first, second = BatchIncident(incident_id(1)), BatchIncident(incident_id(2))
        a, b = manager_id(1), manager_id(2)
        candidates = {first.id: [(a, 0.5), (b, 0.5)], second.id: [(a, 0.5), (b, 0.5)]}
        plan = plan_batch([first, second], candidates, {a: 2, b: 2})
        assert sorted(x.manager_id for x in plan.assignments) == [a, b]

    def test_a_zero_score_candidate_is_still_assigned(self) -> None:
        single = BatchIncident(incident_id(1))
        a = manager_id(1)
        plan = plan_batch([single], {single.id: [(a, 0.0)]}, {a: 1})
        assert [x.manager_id for x in plan.assignments] == [a]

    def test_slot_tie_break_never_costs_score(self) -> None:
        # A is marginally better for both: the load-spreading tie-break must not move one to B.
        first, second = BatchIncident(incident_id(1)), BatchIncident(incident_id(2))
        a, b = manager_id(1), manager_id(2)
        candidates = {first.id: [(a, 0.5001), (b, 0.5)], second.id: [(a, 0.5001), (b, 0.5)]}
        plan = plan_batch([first, second], candidates, {a: 2, b: 2})
        assert [x.manager_id for x in plan.assignments] == [a, a]

    @settings(max_examples=100, deadline=None)
    @given(instance=instances())
    def test_no_manager_exceeds_free_slots(
        self, instance: tuple[list[BatchIncident], Candidates, dict[UUID, int]]
    ) -> None:
        incidents, candidates, free = instance
        plan = plan_batch(incidents, candidates, free)
        load = Counter(a.manager_id for a in plan.assignments)
        assert all(count <= free[m] for m, count in load.items())


class TestInput:
    def test_empty(self) -> None:
        assert plan_batch([], {}, {}) == BatchPlan(assignments=[], unassigned=[])

    def test_output_follows_incident_order(self) -> None:
        incidents = [BatchIncident(incident_id(i)) for i in (3, 1, 2)]
        managers = [manager_id(m) for m in range(3)]
        candidates = {i.id: [(m, 0.5) for m in managers] for i in incidents}
        plan = plan_batch(incidents, candidates, dict.fromkeys(managers, 1))
        assert [x.incident_id for x in plan.assignments] == [i.id for i in incidents]

    def test_a_manager_listed_twice_counts_once_with_the_higher_score(self) -> None:
        tandem = BatchIncident(incident_id(1), 2)
        a = manager_id(1)
        plan = plan_batch([tandem], {tandem.id: [(a, 0.3), (a, 0.6)]}, {a: 2})
        assert plan.assignments == []
        single = BatchIncident(incident_id(2))
        plan = plan_batch([single], {single.id: [(a, 0.3), (a, 0.6)]}, {a: 2})
        assert [x.score for x in plan.assignments] == [0.6]

    def test_missing_candidate_list_means_no_candidate(self) -> None:
        single = BatchIncident(incident_id(1))
        plan = plan_batch([single], {}, {})
        assert [u.reason for u in plan.unassigned] == ["no_candidate"]

    @pytest.mark.parametrize("slots", [0, 3])
    def test_slots_needed_must_be_one_or_two(self, slots: int) -> None:
        with pytest.raises(ValueError, match="slots_needed"):
            plan_batch([BatchIncident(incident_id(1), slots)], {}, {})

    def test_duplicate_incident_is_refused(self) -> None:
        single = BatchIncident(incident_id(1))
        with pytest.raises(ValueError, match="twice"):
            plan_batch([single, single], {}, {})

    @pytest.mark.parametrize("score", [-0.1, 1.5, float("nan")])
    def test_score_outside_unit_interval_is_refused(self, score: float) -> None:
        single = BatchIncident(incident_id(1))
        a = manager_id(1)
        with pytest.raises(ValueError, match="score"):
            plan_batch([single], {single.id: [(a, score)]}, {a: 1})

    def test_solver_limits_are_validated(self) -> None:
        with pytest.raises(ValueError, match="max_branch_nodes"):
            plan_batch([], {}, {}, max_branch_nodes=0)
        with pytest.raises(ValueError, match="milp_time_limit"):
            plan_batch([], {}, {}, milp_time_limit=0)


def _random_instance(
    seed: int, n_incidents: int, n_managers: int, per_incident: int
) -> tuple[list[BatchIncident], Candidates, dict[UUID, int]]:
    rng = random.Random(seed)
    managers = [manager_id(m) for m in range(n_managers)]
    free = {m: rng.choice((1, 1, 2)) for m in managers}
    incidents = [
        BatchIncident(incident_id(i), 2 if rng.random() < 0.4 else 1) for i in range(n_incidents)
    ]
    candidates = {
        i.id: [(m, round(rng.random(), 4)) for m in rng.sample(managers, per_incident)]
        for i in incidents
    }
    return incidents, candidates, free


class TestLargerInstances:
    @settings(max_examples=60, deadline=None)
    @given(
        seed=st.integers(0, 10**6),
        n_incidents=st.integers(5, 40),
        n_managers=st.integers(4, 30),
        per_incident=st.integers(2, 5),
    )
    def test_branch_and_bound_and_milp_agree(
        self, seed: int, n_incidents: int, n_managers: int, per_incident: int
    ) -> None:
        # Too large to enumerate, so the two exact stages check each other: the branch and bound
        # alone (a generous budget) and the MILP (a budget of one relaxation).
        # Capacity is scarce, so many relaxations break tandem rules.
        incidents, candidates, free = _random_instance(
            seed, n_incidents, n_managers, min(per_incident, n_managers)
        )
        branch_and_bound = plan_batch(incidents, candidates, free, max_branch_nodes=20_000)
        milp = plan_batch(incidents, candidates, free, max_branch_nodes=1)
        for plan in (branch_and_bound, milp):
            assert plan.optimal
            assert_feasible(plan, incidents, candidates, free)
        assert plan_quantum(branch_and_bound) == plan_quantum(milp)

    def test_time_limit_returns_a_feasible_plan_flagged_not_optimal(self) -> None:
        incidents, candidates, free = _random_instance(0, 40, 30, 5)
        best = plan_batch(incidents, candidates, free)
        hurried = plan_batch(incidents, candidates, free, max_branch_nodes=1, milp_time_limit=1e-6)
        assert not hurried.optimal
        assert_feasible(hurried, incidents, candidates, free)
        assert plan_quantum(hurried) <= plan_quantum(best)

    def test_plentiful_capacity(self) -> None:
        incidents, candidates, free = _random_instance(7, 200, 600, 30)
        plan = plan_batch(incidents, candidates, free)
        assert plan.optimal
        assert_feasible(plan, incidents, candidates, free)
        assert plan.unassigned == []

    def test_deterministic(self) -> None:
        incidents, candidates, free = _random_instance(3, 60, 40, 6)
        assert plan_batch(incidents, candidates, free) == plan_batch(incidents, candidates, free)


class TestBranching:
    """White-box: the branching rule for a manager on both rows of a tandem incident."""

    def test_third_duplicate_splits_into_both_rows(self) -> None:
        tandem = BatchIncident(incident_id(1), 2)
        # Local managers 0, 1, 2 are called A, B, C below.
        pairs = batch_solver._Pairs(
            incident=np.array([0, 0, 0]), manager=np.array([0, 1, 2]), quantum=np.array([1, 1, 1])
        )
        component = batch_solver._Component.build(
            pairs, np.array([tandem.slots_needed]), np.array([2, 2, 2])
        )
        row_a, row_b = component.rows_of(0)
        duplicate = batch_solver._Relaxation(
            cost=0.0, row_manager=np.array([2, 2]), row_cost=np.zeros(2)
        )
        # Nobody restricted yet: keep C off row B, no split (the rows are interchangeable).
        assert batch_solver._branch(component, batch_solver._Node(), duplicate) == [
            batch_solver._Node(forbidden=frozenset({(row_b, 2)}))
        ]
        # A restricted to row A: C goes to row B, still no split.
        only_a = batch_solver._Node(forbidden=frozenset({(row_b, 0)}))
        assert batch_solver._branch(component, only_a, duplicate) == [
            batch_solver._Node(forbidden=frozenset({(row_b, 0), (row_a, 2)}))
        ]
        # A on row A and B on row B: C's pairs with A and with B need different rows: split.
        both = batch_solver._Node(forbidden=frozenset({(row_b, 0), (row_a, 1)}))
        assert batch_solver._branch(component, both, duplicate) == [
            batch_solver._Node(forbidden=frozenset({(row_b, 0), (row_a, 1), (row_b, 2)})),
            batch_solver._Node(forbidden=frozenset({(row_b, 0), (row_a, 1), (row_a, 2)})),
        ]
