"""Statistical disclosure control: the pure suppression functions (no database).

The central property: a reader who sees a restricted response — and knows the rule (only counts of
1 or 2 are hidden) — cannot pin down any hidden count from it. :func:`consistent_values` plays that
reader: it enumerates every table that would produce exactly the same response and collects the
values each hidden cell takes.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.stats import (
    RARE_REASONS,
    StatTable,
    merge_rare,
    percentile,
    suppress_count,
    suppress_linked,
    suppress_table,
    total_reveals,
)

KEYS = "abcdefgh"


def _cells(counts: list[int]) -> list[tuple[str, int]]:
    return [(KEYS[i], n) for i, n in enumerate(counts)]


def consistent_values(shown: StatTable, total: int | None) -> dict[int, set[int]] | None:
    """For each hidden position, every value it can take given what a reader sees: the visible
    cells, the ``total`` and that a hidden cell is 1 or 2. ``None``: no total, nothing to solve."""
    if total is None:
        return None
    hidden = [i for i, cell in enumerate(shown.items) if cell.suppressed]
    rest = total - sum(cell.count or 0 for cell in shown.items if not cell.suppressed)
    values: dict[int, set[int]] = {i: set() for i in hidden}
    for candidate in itertools.product((1, 2), repeat=len(hidden)):
        if sum(candidate) == rest:
            for position, value in zip(hidden, candidate, strict=True):
                values[position].add(value)
    return values


class TestSuppressTable:
    def test_staff_see_everything(self) -> None:
        table = suppress_table(_cells([1, 2, 7]), restricted=False)
        assert [c.count for c in table.items] == [1, 2, 7]
        assert not any(c.suppressed for c in table.items)
        assert table.total == 10

    def test_nothing_small_nothing_hidden(self) -> None:
        table = suppress_table(_cells([3, 9, 0]), restricted=True)
        assert [c.count for c in table.items] == [3, 9, 0]
        assert table.total == 12

    def test_one_small_cell_hidden_and_the_total_withheld(self) -> None:
        table = suppress_table(_cells([5, 1, 4, 9]), restricted=True)
        assert [c.count for c in table.items] == [5, None, 4, 9]
        assert [c.suppressed for c in table.items] == [False, True, False, False]
        assert table.total is None  # 19 − 18 would give the 1 away

    def test_all_ones_or_all_twos_withhold_the_total(self) -> None:
        for counts in ([1, 1, 6, 8], [2, 2, 6], [2, 2, 2], [1], [2]):
            table = suppress_table(_cells(counts), restricted=True)
            assert [c.count for c in table.items] == [None if n <= 2 else n for n in counts]
            assert table.total is None

    def test_a_one_and_a_two_keep_the_total(self) -> None:
        table = suppress_table(_cells([1, 2, 6]), restricted=True)
        assert [c.count for c in table.items] == [None, None, 6]
        assert table.total == 9  # 3 = 1 + 2 = 2 + 1: neither cell is pinned down

    def test_zero_is_never_hidden(self) -> None:
        table = suppress_table(_cells([0, 1, 0]), restricted=True)
        assert [(c.count, c.suppressed) for c in table.items] == [
            (0, False),
            (None, True),
            (0, False),
        ]
        assert table.total is None

    def test_empty(self) -> None:
        assert suppress_table([], restricted=True) == StatTable(items=[], total=0)

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=6))
    def test_no_hidden_count_can_be_derived(self, counts: list[int]) -> None:
        shown = suppress_table(_cells(counts), restricted=True)
        # exactly the 1s and 2s are hidden, every other number is shown as it is
        for n, cell in zip(counts, shown.items, strict=True):
            assert cell.suppressed == (1 <= n <= 2)
            assert cell.count == (None if 1 <= n <= 2 else n)
        hidden = [n for n in counts if 1 <= n <= 2]
        assert shown.total == (None if total_reveals(hidden) else sum(counts))
        values = consistent_values(shown, shown.total)
        for position, possible in (values or {}).items():
            assert counts[position] in possible  # the truth is among them (sanity)
            assert len(possible) == 2, (counts, shown, position, possible)
        if shown.total is None and hidden:
            # withheld exactly when it would have pinned a cell down
            revealed = consistent_values(shown, sum(counts)) or {}
            assert any(len(possible) == 1 for possible in revealed.values())

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=50), max_size=8))
    def test_unrestricted_is_identity(self, counts: list[int]) -> None:
        table = suppress_table(_cells(counts), restricted=False)
        assert [c.count for c in table.items] == counts
        assert table.total == sum(counts)


class TestSuppressLinked:
    def test_one_revealing_table_withholds_the_shared_total(self) -> None:
        tables, total = suppress_linked(
            {"category": _cells([4, 1, 5]), "level": _cells([3, 3, 4])}, restricted=True
        )
        assert total is None
        assert tables["category"].total is None and tables["level"].total is None
        assert [c.count for c in tables["category"].items] == [4, None, 5]
        assert [c.count for c in tables["level"].items] == [3, 3, 4]  # no small count: shown

    def test_safe_tables_share_their_total(self) -> None:
        tables, total = suppress_linked(
            {"category": _cells([4, 1, 2, 5]), "level": _cells([3, 3, 6])}, restricted=True
        )
        assert total == 12
        assert tables["category"].total == tables["level"].total == 12
        assert [c.count for c in tables["category"].items] == [4, None, None, 5]

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=4),
        st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=4),
    )
    def test_shared_total_shown_only_when_no_table_reveals(
        self, counts: list[int], split: list[int]
    ) -> None:
        total = sum(counts)
        other = [min(n, total - sum(split[:i])) for i, n in enumerate(split)]
        other = [n for n in other if n > 0]
        other.append(total - sum(other))
        tables, shared = suppress_linked({"a": _cells(counts), "b": _cells(other)}, restricted=True)
        reveals = any(total_reveals([n for n in cells if 1 <= n <= 2]) for cells in (counts, other))
        assert shared == (None if reveals else total)
        assert {table.total for table in tables.values()} == {shared}

    def test_unrestricted(self) -> None:
        tables, total = suppress_linked({"a": _cells([1, 2]), "b": _cells([3])}, restricted=False)
        assert total == 3
        assert tables["a"].total == 3


class TestHelpers:
    def test_suppress_count(self) -> None:
        assert suppress_count(0, restricted=True).count == 0
        assert suppress_count(1, restricted=True).suppressed
        assert suppress_count(2, restricted=True).count is None
        assert suppress_count(3, restricted=True).count == 3
        assert suppress_count(2, restricted=False).count == 2

    def test_merge_rare(self) -> None:
        merged = merge_rare([("busy", 4), ("ill", 1), ("i know the family", 2), ("away", 3)])
        assert merged == [("busy", 4), ("away", 3), (RARE_REASONS, 3)]
        assert merge_rare([("busy", 4)]) == [("busy", 4)]

    def test_percentile_matches_linear_interpolation(self) -> None:
        assert percentile([], 0.5) is None
        assert percentile([5.0], 0.9) == 5.0
        assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
        assert abs((percentile([10.0, 20.0, 30.0, 40.0, 50.0], 0.9) or 0) - 46.0) < 1e-9
