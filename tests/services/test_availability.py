"""The day-boundary rules of managers as pure functions: *today* is passed in, never read."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app.services.managers import (
    absence_covers,
    available_on,
    competence_valid_on,
    expiring_competences,
)

TODAY = date(2026, 6, 15)
DAY = timedelta(days=1)


class TestCompetenceValidity:
    @pytest.mark.parametrize(
        ("certified_on", "expires_on", "valid"),
        [
            (date(2024, 1, 1), TODAY, True),  # expires today: still valid
            (date(2024, 1, 1), TODAY - DAY, False),  # expired yesterday
            (date(2024, 1, 1), TODAY + DAY, True),
            (date(2024, 1, 1), None, True),  # does not expire
            (TODAY, TODAY, True),  # certified and expiring today
            (TODAY + DAY, None, False),  # certified from tomorrow
        ],
    )
    def test_valid_on(self, certified_on: date, expires_on: date | None, valid: bool) -> None:
        assert competence_valid_on(certified_on, expires_on, TODAY) is valid


class TestExpiringCompetences:
    def test_window_is_inclusive_and_skips_invalid_ones(self) -> None:
        holdings = [
            ("mediation", date(2024, 1, 1), TODAY),  # today: expiring
            ("youth_work", date(2024, 1, 1), TODAY + 60 * DAY),  # last day of the window
            ("victim_support", date(2024, 1, 1), TODAY + 61 * DAY),  # outside
            ("conflict_analysis", date(2024, 1, 1), TODAY - DAY),  # expired: counts nowhere
            ("anti_discrimination", date(2024, 1, 1), None),  # never expires
            ("right_wing_extremism", TODAY + DAY, TODAY + 10 * DAY),  # not yet certified
        ]
        assert expiring_competences(holdings, TODAY, 60) == [
            ("mediation", TODAY),
            ("youth_work", TODAY + 60 * DAY),
        ]

    def test_window_follows_today(self) -> None:
        holdings = [("mediation", date(2024, 1, 1), TODAY + 61 * DAY)]
        assert expiring_competences(holdings, TODAY, 60) == []
        assert expiring_competences(holdings, TODAY + DAY, 60) == [("mediation", TODAY + 61 * DAY)]
        assert expiring_competences(holdings, TODAY + 62 * DAY, 60) == []

    def test_zero_days_means_only_today(self) -> None:
        holdings = [("a", date(2024, 1, 1), TODAY), ("b", date(2024, 1, 1), TODAY + DAY)]
        assert expiring_competences(holdings, TODAY, 0) == [("a", TODAY)]


class TestAvailability:
    @pytest.mark.parametrize(
        ("starts_on", "ends_on", "covers"),
        [
            (TODAY - 5 * DAY, TODAY, True),  # ends today: still absent today
            (TODAY - 5 * DAY, TODAY - DAY, False),  # ended yesterday
            (TODAY, TODAY, True),
            (TODAY, TODAY + 3 * DAY, True),  # starts today
            (TODAY + DAY, TODAY + 3 * DAY, False),  # starts tomorrow
        ],
    )
    def test_absence_bounds_are_inclusive(
        self, starts_on: date, ends_on: date, covers: bool
    ) -> None:
        assert absence_covers(starts_on, ends_on, TODAY) is covers
        assert available_on("active", [(starts_on, ends_on)], TODAY) is not covers

    @pytest.mark.parametrize("status", ["in_training", "paused", "retired"])
    def test_only_active_managers_are_available(self, status: str) -> None:
        assert available_on(status, [], TODAY) is False
        assert available_on("active", [], TODAY) is True

    def test_any_covering_absence_counts(self) -> None:
        absences = [(TODAY - 9 * DAY, TODAY - 2 * DAY), (TODAY + DAY, TODAY + 2 * DAY)]
        assert available_on("active", absences, TODAY) is True
        assert available_on("active", [*absences, (TODAY, TODAY)], TODAY) is False
