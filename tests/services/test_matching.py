"""The pure matching engine (DESIGN §2): hard constraints, neighbour fallback, score, order."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.dispatch.matching import (
    DISTRICT_VALUES,
    EXCLUSION_REASONS,
    WEIGHTS,
    AbsencePeriod,
    CompetenceHolding,
    IncidentFacts,
    ManagerFacts,
    Ranking,
    check_manual_pick,
    competence_valid,
    district_match,
    is_absent,
    rank_candidates,
    score_manager,
)

TODAY = date(2025, 3, 10)
YESTERDAY = TODAY - timedelta(days=1)
TOMORROW = TODAY + timedelta(days=1)
NOW = datetime(2025, 3, 10, 11, 30, tzinfo=UTC)
HOME = "ilversgehofen"
NEIGHBOUR = "johannesplatz"
FAR = "altstadt"


def uid(n: int) -> UUID:
    return UUID(int=n)


def incident(**overrides: object) -> IncidentFacts:
    facts = IncidentFacts(
        id=uid(10_000),
        district=HOME,
        required_competences=frozenset({"mediation"}),
        languages=frozenset(),
        neighbours=frozenset({NEIGHBOUR}),
    )
    return replace(facts, **overrides)  # type: ignore[arg-type]


def manager(n: int = 1, /, **overrides: object) -> ManagerFacts:
    facts = ManagerFacts(
        id=uid(n),
        display_name=f"Manager {n}",
        status="active",
        home_district=HOME,
        languages=frozenset({"de"}),
        max_open_assignments=2,
        competences=(CompetenceHolding("mediation", date(2020, 1, 1), None),),
    )
    return replace(facts, **overrides)  # type: ignore[arg-type]


def rank(
    managers: list[ManagerFacts], facts: IncidentFacts | None = None, **options: object
) -> Ranking:
    return rank_candidates(facts or incident(), managers, TODAY, now=NOW, **options)  # type: ignore[arg-type]


def assert_accounted(ranking: Ranking, roster_size: int) -> None:
    assert set(ranking.excluded) == set(EXCLUSION_REASONS)
    assert len(ranking.candidates) + sum(ranking.excluded.values()) == roster_size


def only_exclusion(ranking: Ranking, reason: str) -> None:
    assert ranking.candidates == []
    assert ranking.excluded == {r: int(r == reason) for r in EXCLUSION_REASONS}


class TestAbsence:
    def test_absence_ending_today_is_still_absent(self) -> None:
        assert is_absent([AbsencePeriod(YESTERDAY, TODAY)], TODAY)

    def test_absence_starting_today_is_absent(self) -> None:
        assert is_absent([AbsencePeriod(TODAY, TOMORROW)], TODAY)

    def test_absence_ended_yesterday_is_available(self) -> None:
        assert not is_absent([AbsencePeriod(YESTERDAY - timedelta(days=5), YESTERDAY)], TODAY)

    def test_absence_starting_tomorrow_is_available(self) -> None:
        assert not is_absent([AbsencePeriod(TOMORROW, TOMORROW)], TODAY)

    def test_no_absences(self) -> None:
        assert not is_absent([], TODAY)


class TestCompetenceValidity:
    def test_expiring_today_is_still_valid(self) -> None:
        assert competence_valid(CompetenceHolding("mediation", date(2020, 1, 1), TODAY), TODAY)

    def test_expired_yesterday_is_invalid(self) -> None:
        assert not competence_valid(
            CompetenceHolding("mediation", date(2020, 1, 1), YESTERDAY), TODAY
        )

    def test_without_expiry_is_valid(self) -> None:
        assert competence_valid(CompetenceHolding("mediation", date(2020, 1, 1), None), TODAY)

    def test_certified_in_the_future_is_invalid(self) -> None:
        assert not competence_valid(CompetenceHolding("mediation", TOMORROW, None), TODAY)


class TestHardConstraints:
    def test_eligible_manager_is_a_candidate(self) -> None:
        ranking = rank([manager()])
        assert [c.manager_id for c in ranking.candidates] == [uid(1)]
        assert ranking.excluded == dict.fromkeys(EXCLUSION_REASONS, 0)

    @pytest.mark.parametrize("status", ["in_training", "paused", "retired"])
    def test_not_active(self, status: str) -> None:
        only_exclusion(rank([manager(status=status)]), "not_active")

    def test_absent(self) -> None:
        ranking = rank([manager(absences=(AbsencePeriod(YESTERDAY, TODAY),))])
        only_exclusion(ranking, "absent")

    def test_absence_ended_yesterday_is_a_candidate(self) -> None:
        ranking = rank([manager(absences=(AbsencePeriod(YESTERDAY, YESTERDAY),))])
        assert len(ranking.candidates) == 1

    def test_at_capacity(self) -> None:
        only_exclusion(rank([manager(open_assignments=2, max_open_assignments=2)]), "at_capacity")

    def test_below_capacity_is_a_candidate(self) -> None:
        assert len(rank([manager(open_assignments=1, max_open_assignments=2)]).candidates) == 1

    def test_missing_competence(self) -> None:
        only_exclusion(rank([manager(competences=())]), "missing_competence")

    def test_competence_expired_yesterday_is_missing(self) -> None:
        holding = CompetenceHolding("mediation", date(2020, 1, 1), YESTERDAY)
        only_exclusion(rank([manager(competences=(holding,))]), "missing_competence")

    def test_competence_expiring_today_is_held(self) -> None:
        holding = CompetenceHolding("mediation", date(2020, 1, 1), TODAY)
        assert len(rank([manager(competences=(holding,))]).candidates) == 1

    def test_every_required_competence_is_needed(self) -> None:
        facts = incident(required_competences=frozenset({"mediation", "youth_work"}))
        only_exclusion(rank([manager()], facts), "missing_competence")

    def test_wrong_district(self) -> None:
        only_exclusion(rank([manager(home_district=FAR)]), "wrong_district")

    def test_served_district_is_not_wrong(self) -> None:
        ranking = rank([manager(home_district=FAR, districts=frozenset({HOME}))])
        assert [c.district_match for c in ranking.candidates] == ["served"]

    @pytest.mark.parametrize("status", ["offered", "accepted", "declined", "expired", "withdrawn"])
    def test_already_involved(self, status: str) -> None:
        only_exclusion(
            rank([manager(statuses_on_incident=frozenset({status}))]), "already_involved"
        )

    def test_completed_assignment_does_not_exclude(self) -> None:
        ranking = rank([manager(statuses_on_incident=frozenset({"completed"}))])
        assert len(ranking.candidates) == 1

    def test_language(self) -> None:
        facts = incident(languages=frozenset({"ar", "tr"}))
        only_exclusion(rank([manager(languages=frozenset({"de"}))], facts), "language")

    def test_speaking_one_of_the_languages_is_enough(self) -> None:
        facts = incident(languages=frozenset({"ar", "tr"}))
        assert len(rank([manager(languages=frozenset({"de", "tr"}))], facts).candidates) == 1

    def test_no_incident_languages_means_no_language_constraint(self) -> None:
        assert len(rank([manager(languages=frozenset())]).candidates) == 1

    @pytest.mark.parametrize("first", range(len(EXCLUSION_REASONS)))
    def test_counted_under_the_first_failing_constraint(self, first: int) -> None:
        # One way to fail each constraint, in DESIGN order; the manager fails all from `first` on.
        failures: list[tuple[str, object]] = [
            ("status", "retired"),
            ("absences", (AbsencePeriod(TODAY, TODAY),)),
            ("open_assignments", 2),
            ("competences", ()),
            ("home_district", FAR),
            ("statuses_on_incident", frozenset({"declined"})),
            ("languages", frozenset({"en"})),
        ]
        overrides = dict(failures[first:])
        facts = incident(languages=frozenset({"de"}))
        only_exclusion(rank([manager(**overrides)], facts), EXCLUSION_REASONS[first])

    def test_every_manager_is_counted_exactly_once(self) -> None:
        roster = [
            manager(1),
            manager(2, status="retired"),
            manager(3, status="paused"),
            manager(4, absences=(AbsencePeriod(TODAY, TODAY),)),
            manager(5, open_assignments=2),
            manager(6, competences=()),
            manager(7, home_district=FAR),
            manager(8, statuses_on_incident=frozenset({"offered"})),
            manager(9, languages=frozenset({"en"})),
            manager(10, home_district=NEIGHBOUR),
        ]
        facts = incident(languages=frozenset({"de"}))
        ranking = rank(roster, facts)
        assert_accounted(ranking, len(roster))
        assert ranking.excluded == {
            "not_active": 2,
            "absent": 1,
            "at_capacity": 1,
            "missing_competence": 1,
            "wrong_district": 2,  # the far one, and the neighbour (manager 1 qualifies)
            "already_involved": 1,
            "language": 1,
        }
        assert [c.manager_id for c in ranking.candidates] == [uid(1)]

    def test_excluded_has_all_keys_for_an_empty_roster(self) -> None:
        ranking = rank([])
        assert ranking.candidates == []
        assert ranking.excluded == dict.fromkeys(EXCLUSION_REASONS, 0)


class TestNeighbourFallback:
    def test_neighbour_is_a_candidate_when_nobody_in_the_district_qualifies(self) -> None:
        ranking = rank([manager(1, home_district=NEIGHBOUR), manager(2, competences=())])
        assert [(c.manager_id, c.district_match) for c in ranking.candidates] == [
            (uid(1), "neighbour")
        ]
        assert ranking.fallback_used
        assert_accounted(ranking, 2)

    def test_neighbour_served_district_counts(self) -> None:
        ranking = rank([manager(home_district=FAR, districts=frozenset({NEIGHBOUR}))])
        assert [c.district_match for c in ranking.candidates] == ["neighbour"]

    def test_no_fallback_when_someone_in_the_district_qualifies(self) -> None:
        ranking = rank([manager(1), manager(2, home_district=NEIGHBOUR)])
        assert [c.manager_id for c in ranking.candidates] == [uid(1)]
        assert ranking.excluded["wrong_district"] == 1
        assert not ranking.fallback_used

    def test_no_fallback_when_switched_off(self) -> None:
        ranking = rank([manager(home_district=NEIGHBOUR)], fallback_neighbours=False)
        only_exclusion(ranking, "wrong_district")
        assert not ranking.fallback_used

    @pytest.mark.parametrize(
        "blocker",
        [
            {"statuses_on_incident": frozenset({"declined"})},
            {"languages": frozenset({"en"})},
        ],
        ids=["already_involved", "language"],
    )
    def test_in_district_manager_failing_a_later_constraint_does_not_qualify(
        self, blocker: dict[str, object]
    ) -> None:
        facts = incident(languages=frozenset({"de"}))
        ranking = rank([manager(1, **blocker), manager(2, home_district=NEIGHBOUR)], facts)
        assert [c.manager_id for c in ranking.candidates] == [uid(2)]
        assert ranking.fallback_used
        assert_accounted(ranking, 2)

    def test_neighbour_failing_a_later_constraint_is_counted_there_under_fallback(self) -> None:
        roster = [manager(1, home_district=NEIGHBOUR, statuses_on_incident=frozenset({"expired"}))]
        only_exclusion(rank(roster), "already_involved")

    def test_neighbour_failing_a_later_constraint_is_wrong_district_without_fallback(
        self,
    ) -> None:
        roster = [
            manager(1),
            manager(2, home_district=NEIGHBOUR, statuses_on_incident=frozenset({"expired"})),
        ]
        ranking = rank(roster)
        assert ranking.excluded["wrong_district"] == 1
        assert ranking.excluded["already_involved"] == 0

    def test_far_manager_stays_wrong_district_under_fallback(self) -> None:
        ranking = rank([manager(1, home_district=FAR), manager(2, home_district=NEIGHBOUR)])
        assert [c.manager_id for c in ranking.candidates] == [uid(2)]
        assert ranking.excluded["wrong_district"] == 1

    def test_fallback_with_nobody_anywhere(self) -> None:
        ranking = rank([manager(home_district=FAR)])
        assert ranking.fallback_used
        only_exclusion(ranking, "wrong_district")


class TestScore:
    def test_weights_sum_to_one(self) -> None:
        assert math.isclose(sum(WEIGHTS.values()), 1.0)
        assert all(0 < weight < 1 for weight in WEIGHTS.values())

    def test_reasons_cover_every_factor_once_with_its_weight(self) -> None:
        (candidate,) = rank([manager()]).candidates
        assert [r.factor for r in candidate.reasons] == list(WEIGHTS)
        assert all(r.weight == WEIGHTS[r.factor] for r in candidate.reasons)
        assert all(r.detail for r in candidate.reasons)

    def test_score_is_the_weighted_sum(self) -> None:
        roster = [
            manager(1, open_assignments=1, last_assigned_at=NOW - timedelta(days=7)),
            manager(2, home_district=FAR, districts=frozenset({HOME}), earlier_cases_in_district=2),
        ]
        for candidate in rank(roster).candidates:
            total = sum(r.weight * r.value for r in candidate.reasons)
            assert candidate.score == pytest.approx(total, abs=1e-4)
            assert candidate.score == round(candidate.score, 4)

    def test_district_values_rank_home_over_served_over_neighbour(self) -> None:
        assert DISTRICT_VALUES["home"] > DISTRICT_VALUES["served"] > DISTRICT_VALUES["neighbour"]
        facts = incident()
        home = score_manager(facts, manager(1), TODAY, now=NOW)
        served = score_manager(
            facts, manager(2, home_district=FAR, districts=frozenset({HOME})), TODAY, now=NOW
        )
        neighbour = score_manager(facts, manager(3, home_district=NEIGHBOUR), TODAY, now=NOW)
        assert home.score > served.score > neighbour.score
        assert [home.reasons[0].detail, neighbour.reasons[0].detail] == [
            "home district",
            "neighbouring district",
        ]

    def test_a_fresh_perfect_manager_scores_one(self) -> None:
        holdings = tuple(
            CompetenceHolding(code, date(2020, 1, 1), None)
            for code in ("mediation", "youth_work", "conflict_analysis", "anti_discrimination")
        )
        best = manager(competences=holdings, earlier_cases_in_district=5)
        (candidate,) = rank([best]).candidates
        assert candidate.score == 1.0
        assert all(r.value == 1.0 for r in candidate.reasons)

    def test_load(self) -> None:
        (candidate,) = rank([manager(open_assignments=1, max_open_assignments=2)]).candidates
        load = candidate.reasons[1]
        assert (load.factor, load.value, load.detail) == ("load", 0.5, "1 of 2 slots in use")

    def test_lower_load_scores_higher(self) -> None:
        ranking = rank([manager(1, open_assignments=1), manager(2, open_assignments=0)])
        assert [c.manager_id for c in ranking.candidates] == [uid(2), uid(1)]

    def test_fairness_never_assigned(self) -> None:
        (candidate,) = rank([manager(last_assigned_at=None)]).candidates
        assert (candidate.reasons[2].value, candidate.reasons[2].detail) == (1.0, "never assigned")

    def test_fairness_grows_with_days_and_saturates(self) -> None:
        values = []
        for days in (0, 1, 12, 30, 90):
            (candidate,) = rank([manager(last_assigned_at=NOW - timedelta(days=days))]).candidates
            values.append((candidate.reasons[2].value, candidate.reasons[2].detail))
        assert values == [
            (0.0, "last assignment today"),
            (0.0333, "last assignment 1 day ago"),
            (0.4, "last assignment 12 days ago"),
            (1.0, "last assignment 30 days ago"),
            (1.0, "last assignment 90 days ago"),
        ]

    def test_fairness_of_a_future_timestamp_is_zero(self) -> None:
        (candidate,) = rank([manager(last_assigned_at=NOW + timedelta(hours=2))]).candidates
        assert candidate.reasons[2].value == 0.0

    def test_competence_breadth_counts_valid_extra_competences(self) -> None:
        holdings = (
            CompetenceHolding("mediation", date(2020, 1, 1), None),
            CompetenceHolding("youth_work", date(2020, 1, 1), None),
            CompetenceHolding("hate_speech", date(2020, 1, 1), YESTERDAY),  # expired
        )
        (candidate,) = rank([manager(competences=holdings)]).candidates
        breadth = candidate.reasons[3]
        assert (breadth.value, breadth.detail) == (0.3333, "1 extra competence (youth_work)")

    def test_competence_breadth_only_counts_relevant_ones_when_given(self) -> None:
        holdings = tuple(
            CompetenceHolding(code, date(2020, 1, 1), None)
            for code in ("mediation", "youth_work", "conflict_analysis")
        )
        facts = incident(relevant_competences=frozenset({"conflict_analysis"}))
        (candidate,) = rank([manager(competences=holdings)], facts).candidates
        assert candidate.reasons[3].detail == "1 extra competence (conflict_analysis)"

    def test_no_extra_competences(self) -> None:
        (candidate,) = rank([manager()]).candidates
        assert (candidate.reasons[3].value, candidate.reasons[3].detail) == (
            0.0,
            "no extra competences",
        )

    @pytest.mark.parametrize(
        ("cases", "value", "detail"),
        [
            (0, 0.0, "no earlier cases in this district"),
            (1, 0.3333, "1 earlier case in this district"),
            (2, 0.6667, "2 earlier cases in this district"),
            (7, 1.0, "7 earlier cases in this district"),
        ],
    )
    def test_continuity(self, cases: int, value: float, detail: str) -> None:
        (candidate,) = rank([manager(earlier_cases_in_district=cases)]).candidates
        assert (candidate.reasons[4].value, candidate.reasons[4].detail) == (value, detail)


class TestOrdering:
    def test_ties_break_by_lower_load_then_manager_id(self) -> None:
        # Same score 0.6: manager 3 trades load (1 of 3 slots) for one extra competence and one
        # earlier case in the district; managers 1 and 2 are identical.
        extra = (
            CompetenceHolding("mediation", date(2020, 1, 1), None),
            CompetenceHolding("youth_work", date(2020, 1, 1), None),
        )
        roster = [
            manager(2, last_assigned_at=NOW),
            manager(
                3,
                open_assignments=1,
                max_open_assignments=3,
                competences=extra,
                earlier_cases_in_district=1,
                last_assigned_at=NOW,
            ),
            manager(1, last_assigned_at=NOW),
        ]
        ranking = rank(roster)
        assert {c.score for c in ranking.candidates} == {0.6}
        assert [c.manager_id for c in ranking.candidates] == [uid(1), uid(2), uid(3)]

    def test_order_does_not_depend_on_roster_order(self) -> None:
        roster = [
            manager(n, open_assignments=n % 2, earlier_cases_in_district=n % 3) for n in range(1, 9)
        ]
        expected = [c.manager_id for c in rank(roster).candidates]
        shuffled = roster[:]
        random.Random(4).shuffle(shuffled)
        assert [c.manager_id for c in rank(shuffled).candidates] == expected

    def test_limit_cuts_candidates_only(self) -> None:
        roster = [manager(n) for n in range(1, 6)] + [manager(9, status="retired")]
        full = rank(roster)
        limited = rank(roster, limit=2)
        assert limited.candidates == full.candidates[:2]
        assert limited.excluded == full.excluded

    def test_limit_zero(self) -> None:
        assert rank([manager()], limit=0).candidates == []

    def test_negative_limit_is_refused(self) -> None:
        with pytest.raises(ValueError, match="limit"):
            rank([manager()], limit=-1)


class TestManualPick:
    def test_eligible(self) -> None:
        assert check_manual_pick(incident(), manager(), TODAY) is None

    def test_neighbour_is_always_allowed(self) -> None:
        # Even when someone in the district would qualify.
        assert check_manual_pick(incident(), manager(home_district=NEIGHBOUR), TODAY) is None

    def test_outside_district_and_neighbours(self) -> None:
        assert check_manual_pick(incident(), manager(home_district=FAR), TODAY) == "wrong_district"

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"status": "retired", "open_assignments": 2}, "not_active"),
            ({"absences": (AbsencePeriod(TODAY, TODAY),), "open_assignments": 2}, "absent"),
            ({"open_assignments": 2, "competences": ()}, "at_capacity"),
            ({"competences": (), "home_district": FAR}, "missing_competence"),
            ({"statuses_on_incident": frozenset({"accepted"})}, "already_involved"),
            ({"languages": frozenset({"en"})}, "language"),
        ],
    )
    def test_first_failing_constraint(self, overrides: dict[str, object], reason: str) -> None:
        facts = incident(languages=frozenset({"de"}))
        assert check_manual_pick(facts, manager(**overrides), TODAY) == reason

    def test_score_manager_refuses_a_manager_outside_the_area(self) -> None:
        with pytest.raises(ValueError, match="neighbouring"):
            score_manager(incident(), manager(home_district=FAR), TODAY, now=NOW)


class TestDistrictMatch:
    def test_home_wins_over_served(self) -> None:
        assert district_match(incident(), manager(districts=frozenset({HOME}))) == "home"

    def test_none(self) -> None:
        assert district_match(incident(), manager(home_district=FAR)) is None


_DISTRICTS = [HOME, NEIGHBOUR, FAR]
_COMPETENCES = ["mediation", "youth_work", "conflict_analysis"]

_managers = st.builds(
    lambda n, status, home, served, langs, cap, open_, comps, absent, involved, cases, days: (
        ManagerFacts(
            id=uid(n),
            display_name=f"M{n}",
            status=status,
            home_district=home,
            districts=frozenset(served),
            languages=frozenset(langs),
            max_open_assignments=cap,
            competences=tuple(
                CompetenceHolding(code, date(2020, 1, 1), TODAY + timedelta(days=shift))
                for code, shift in comps
            ),
            absences=(AbsencePeriod(TODAY, TODAY),) if absent else (),
            open_assignments=min(open_, cap),
            last_assigned_at=None if days is None else NOW - timedelta(days=days),
            statuses_on_incident=frozenset({involved}) if involved else frozenset(),
            earlier_cases_in_district=cases,
        )
    ),
    st.integers(1, 10**6),
    st.sampled_from(["active", "active", "active", "paused", "retired", "in_training"]),
    st.sampled_from(_DISTRICTS),
    st.sets(st.sampled_from(_DISTRICTS), max_size=2),
    st.sets(st.sampled_from(["de", "en", "ar"]), max_size=2),
    st.integers(1, 3),
    st.integers(0, 3),
    st.lists(st.tuples(st.sampled_from(_COMPETENCES), st.integers(-2, 2)), max_size=3),
    st.booleans(),
    st.sampled_from([None, None, "completed", "declined", "offered"]),
    st.integers(0, 5),
    st.one_of(st.none(), st.floats(0, 60)),
)


class TestRankingProperties:
    @settings(max_examples=200, deadline=None)
    @given(
        roster=st.lists(_managers, max_size=12, unique_by=lambda m: m.id),
        languages=st.sets(st.sampled_from(["de", "en", "ar"]), max_size=2),
        fallback=st.booleans(),
    )
    def test_ranking_invariants(
        self, roster: list[ManagerFacts], languages: set[str], fallback: bool
    ) -> None:
        facts = incident(languages=frozenset(languages))
        ranking = rank(roster, facts, fallback_neighbours=fallback)
        assert_accounted(ranking, len(roster))
        keys = [(-c.score, c.open_assignments, c.manager_id) for c in ranking.candidates]
        assert keys == sorted(keys)
        by_id = {m.id: m for m in roster}
        for candidate in ranking.candidates:
            assert check_manual_pick(facts, by_id[candidate.manager_id], TODAY) is None
            assert all(0.0 <= r.value <= 1.0 for r in candidate.reasons)
            total = sum(r.weight * r.value for r in candidate.reasons)
            assert candidate.score == pytest.approx(total, abs=1e-4)
            if candidate.district_match == "neighbour":
                assert ranking.fallback_used
        if ranking.fallback_used:
            assert fallback
            assert not any(c.district_match != "neighbour" for c in ranking.candidates)
