"""Statistical disclosure control: the pure suppression functions (no database).

The central property: a reader who sees a restricted response — and knows the algorithm — cannot
pin down any hidden count. :func:`consistent_values` plays that reader: it enumerates every table
that would produce exactly the same response and collects the values each hidden cell takes.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

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
)

KEYS = "abcdefgh"


def _cells(counts: Sequence[int]) -> list[tuple[str, int]]:
    return [(KEYS[i], n) for i, n in enumerate(counts)]


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to write ``total`` as ``parts`` positive integers."""
    if parts == 0:
        return [()] if total == 0 else []
    return [
        tuple(b - a for a, b in itertools.pairwise((0, *cuts, total)))
        for cuts in itertools.combinations(range(1, total), parts - 1)
    ]


def consistent_values(shown: StatTable, total: int | None) -> dict[int, set[int]] | None:
    """For each hidden position, every value it can take given what a reader sees.

    The reader knows the visible cells, that hidden cells are non-zero (zero is never hidden) and
    the ``total`` (the response's, or one learnt from another grouping). ``None``: no total, so
    the hidden cells are unbounded.
    """
    if total is None:
        return None
    hidden = [i for i, cell in enumerate(shown.items) if cell.suppressed]
    visible_sum = sum(cell.count or 0 for cell in shown.items if not cell.suppressed)
    values: dict[int, set[int]] = {i: set() for i in hidden}
    for candidate in _compositions(total - visible_sum, len(hidden)):
        for position, value in zip(hidden, candidate, strict=True):
            values[position].add(value)
    return values


class TestCompositions:
    def test_small(self) -> None:
        assert sorted(_compositions(4, 2)) == [(1, 3), (2, 2), (3, 1)]
        assert _compositions(3, 3) == [(1, 1, 1)]
        assert _compositions(2, 3) == []


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

    def test_one_small_cell_takes_the_smallest_other_with_it(self) -> None:
        table = suppress_table(_cells([5, 1, 4, 9]), restricted=True)
        assert [c.count for c in table.items] == [5, None, None, 9]
        assert [c.suppressed for c in table.items] == [False, True, True, False]
        assert table.total == 19  # 19 - 14 = 5 = 1 + 4 = 2 + 3 = 3 + 2 = 4 + 1: undetermined

    def test_two_ones_are_not_enough(self) -> None:
        # {1, 1} hidden with the total known would be "both 1": a third cell joins them
        table = suppress_table(_cells([1, 1, 6, 8]), restricted=True)
        assert [c.count for c in table.items] == [None, None, None, 8]
        assert table.total == 16

    def test_one_and_two_protect_each_other(self) -> None:
        table = suppress_table(_cells([1, 2, 6]), restricted=True)
        assert [c.count for c in table.items] == [None, None, 6]
        assert table.total == 9

    def test_all_hidden_withholds_the_total(self) -> None:
        for counts in ([1, 1, 1], [2, 2], [1], [2], [1, 5]):
            table = suppress_table(_cells(counts), restricted=True)
            assert all(c.suppressed for c in table.items)
            assert table.total is None

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
    @given(st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=5))
    def test_no_hidden_count_can_be_derived(self, counts: list[int]) -> None:
        shown = suppress_table(_cells(counts), restricted=True)
        # every 1 and 2 is hidden, every visible number is exact, zero is never hidden
        for n, cell in zip(counts, shown.items, strict=True):
            if 1 <= n <= 2:
                assert cell.suppressed and cell.count is None
            if not cell.suppressed:
                assert cell.count == n
            if n == 0:
                assert not cell.suppressed
        assert shown.total in (None, sum(counts))
        values = consistent_values(shown, shown.total)
        for position, possible in (values or {}).items():
            assert counts[position] in possible  # the truth is among them (sanity)
            assert len(possible) >= 2, (counts, shown, position, possible)

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=5))
    def test_protected_even_when_the_total_is_known_elsewhere(self, counts: list[int]) -> None:
        """Another grouping of the same incidents may reveal the total. Even then every hidden
        cell keeps two possible values — except in the one documented residual case: every
        non-zero cell is hidden and all of them are 1 (this table then withholds its total, and
        :func:`suppress_linked` keeps siblings in one response from revealing it)."""
        shown = suppress_table(_cells(counts), restricted=True)
        if sum(counts) == 0:
            assert shown.total == 0 and not any(c.suppressed for c in shown.items)
            return
        if sum(counts) <= 2:
            # no grouping of one or two incidents shows a cell or a total: nothing to learn from
            assert shown.total is None and all(c.suppressed for c in shown.items if c.count != 0)
            return
        hidden = [i for i, c in enumerate(shown.items) if c.suppressed]
        values = consistent_values(shown, sum(counts)) or {}
        residual = (
            bool(hidden)
            and all(counts[i] == 1 for i in hidden)
            and not any((c.count or 0) > 0 for c in shown.items if not c.suppressed)
        )
        for position, possible in values.items():
            assert len(possible) >= 2 or residual, (counts, shown, position, possible)
        if residual:
            assert shown.total is None

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=50), max_size=8))
    def test_unrestricted_is_identity(self, counts: list[int]) -> None:
        table = suppress_table(_cells(counts), restricted=False)
        assert [c.count for c in table.items] == counts
        assert table.total == sum(counts)


class TestSuppressLinked:
    def test_siblings_cannot_reveal_the_total(self) -> None:
        # by category all 1 (unprotectable), by level one cell of 3: the level table alone
        # would reveal the total 3 and with it "all categories are 1"
        tables, total = suppress_linked(
            {"category": _cells([1, 1, 1]), "level": _cells([3])}, restricted=True
        )
        assert total is None
        assert all(c.suppressed for c in tables["category"].items)
        assert all(c.suppressed for c in tables["level"].items)
        assert tables["level"].total is None and tables["category"].total is None

    def test_classic_two_table_attack_is_blocked(self) -> None:
        # category {8, 2}, level {9, 1}: with per-table rules alone 10 - 8 = 2 and 10 - 9 = 1
        tables, total = suppress_linked(
            {"category": _cells([8, 2]), "level": _cells([9, 1])}, restricted=True
        )
        assert total is None
        assert [c.count for c in tables["category"].items] == [None, None]
        assert [c.count for c in tables["level"].items] == [None, None]

    def test_safe_tables_share_their_total(self) -> None:
        tables, total = suppress_linked(
            {"category": _cells([4, 1, 5]), "level": _cells([3, 3, 4])}, restricted=True
        )
        assert total == 10
        assert tables["category"].total == tables["level"].total == 10
        assert [c.count for c in tables["level"].items] == [3, 3, 4]

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=3),
        st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=3),
    )
    def test_no_sibling_reveals_a_withheld_total(self, counts: list[int], split: list[int]) -> None:
        # a second grouping of the same incidents: the same total, split differently
        total = sum(counts)
        other = [min(n, total - sum(split[:i])) for i, n in enumerate(split)]
        other = [n for n in other if n > 0]
        other.append(total - sum(other))
        tables, shared = suppress_linked({"a": _cells(counts), "b": _cells(other)}, restricted=True)
        if shared is None:
            for table in tables.values():
                assert table.total is None
                nonzero = [c for c in table.items if c.suppressed or (c.count or 0) > 0]
                if nonzero:
                    # a table without a hidden cell would add up to the withheld total
                    assert any(c.suppressed for c in table.items)
        else:
            assert shared == total

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
