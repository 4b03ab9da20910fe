"""Statistics and district profiles on the event loop (:mod:`app.core.reads`): the same SQL as
:class:`app.repositories.stats.StatsRepository` for the requests without a date range, written
once for both databases, one short statement each (the tally, one district's roster).

Values come back as the database stores them (SQLite: UUIDs as 32 hex digits, timestamps and
dates as text; PostgreSQL: text for ``uuid`` and ``timestamptz``) and are turned into the values
the unit-of-work path reads here, so that the service builds the very same response.
"""

from __future__ import annotations

import uuid
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from app.core.reads import (
    DialectStatement,
    Reads,
    ReadStatement,
    time_text,
    time_value,
    uuid_text,
)
from app.models.incident import OPEN_INCIDENT_STATUSES
from app.models.recommendation import CLOSED_RECOMMENDATION_STATUSES
from app.models.roster import ROSTER_ROW
from app.models.tally import CITY_WIDE
from app.repositories.stats import local_month_counts, local_month_windows

_OPEN = ", ".join(f"'{s.value}'" for s in sorted(OPEN_INCIDENT_STATUSES))
_CLOSED = ", ".join(f"'{s.value}'" for s in sorted(CLOSED_RECOMMENDATION_STATUSES))
_DISTRICT = ReadStatement("SELECT code, name, city FROM district WHERE code = :d")
_COMPETENCES = ReadStatement("SELECT code FROM competence ORDER BY code")


def _by_key(table: str, key: str, district: bool) -> ReadStatement:
    # one district's rows, every district's, or the city-wide ones (district '')
    if district:
        where = "WHERE district = :d "
    else:
        where = "WHERE district <> '' " if key == "district" else "WHERE district = '' "
    return ReadStatement(
        f"SELECT {key}, sum(n) FROM {table} {where}"  # noqa: S608 (constant names only)
        f"GROUP BY {key} HAVING sum(n) > 0 ORDER BY {key}"
    )


#: (group_by, one district?) → counts per key, ascending, zeros left out
_COUNTS = {
    (group_by, district): _by_key(table, group_by, district)
    for group_by, table in (
        ("category", "incident_tally_category"),
        ("district", "incident_tally_category"),
        ("escalation_level", "incident_tally_level"),
    )
    for district in (False, True)
}
_UTC_MONTHS = {
    district: ReadStatement(
        "SELECT month, sum(n) FROM incident_tally_category "  # noqa: S608 (constant text)
        f"WHERE district = {':d' if district else repr(CITY_WIDE)} GROUP BY month"
    )
    for district in (False, True)
}
_RANGE = {
    district: ReadStatement(
        "SELECT (SELECT min(reported_at) FROM incident{w}), (SELECT max(reported_at) FROM "
        "incident{w})".replace("{w}", " WHERE district = :d" if district else "")
    )
    for district in (False, True)
}
#: The instants in the month windows (:func:`local_month_windows`), given as ONE parameter — a
#: JSON array of ``[low, high]`` pairs as the database stores instants — however many months:
#: one index range per window, in a nested loop. (24 ``OR``-ed ranges a statement, as before,
#: cost PostgreSQL 1.6 ms of CPU per district profile, a bitmap of every range each time, and
#: psycopg caches no statement of more than 50 parameters.)
_WINDOW_ROWS = {
    district: DialectStatement(
        "SELECT i.reported_at FROM json_each(:windows) AS w JOIN incident AS i ON "  # noqa: S608
        + ("i.district = :d AND " if district else "")
        + "i.reported_at >= json_extract(w.value, '$[0]') "
        "AND i.reported_at < json_extract(w.value, '$[1]')",
        "SELECT i.reported_at FROM jsonb_array_elements(CAST(:windows AS jsonb)) AS w(pair) "  # noqa: S608
        "JOIN incident AS i ON "
        + ("i.district = :d AND " if district else "")
        + "i.reported_at >= CAST(w.pair ->> 0 AS timestamptz) "
        "AND i.reported_at < CAST(w.pair ->> 1 AS timestamptz)",
    )
    for district in (False, True)
}
#: The month windows as bound (:meth:`StatsReads._windows`) by (first month, last month, zone,
#: database kind). A handful of keys in a day's use; emptied when full.
_WINDOWS: dict[tuple[str, str, str, str], str | None] = {}
_WINDOWS_KEPT = 64
_OPEN_COUNT = ReadStatement(
    f"SELECT count(*) FROM incident WHERE district = :d AND status IN ({_OPEN})"  # noqa: S608
)
#: Managers serving the district: home district or served district (UNION: distinct)
_SERVING = (
    "(SELECT id AS manager_id FROM manager WHERE home_district = :d "
    "UNION SELECT manager_id FROM manager_district WHERE district_code = :d) AS s"
)
_VALID = "mc.certified_on <= :today AND (mc.expires_on IS NULL OR mc.expires_on >= :today)"
#: Per competence held validly by an active manager serving the district (the roster: gaps),
#: how many of them are available today (not absent: coverage) — one pass for both.
_ABSENT = (
    "EXISTS (SELECT 1 FROM absence AS a WHERE a.manager_id = m.id "
    "AND a.starts_on <= :today AND a.ends_on >= :today)"
)
_ROSTER = ReadStatement(
    f"SELECT mc.competence_code, count(DISTINCT CASE WHEN NOT {_ABSENT} THEN m.id END) "  # noqa: S608
    f"FROM manager AS m JOIN {_SERVING} ON s.manager_id = m.id "
    "JOIN manager_competence AS mc ON mc.manager_id = m.id "
    f"WHERE m.status = 'active' AND {_VALID} GROUP BY mc.competence_code"
)
#: The roster's version (app/models/roster.py): no row, no version
_ROSTER_VERSION = ReadStatement(
    f"SELECT token FROM roster_version WHERE id = {ROSTER_ROW}"  # noqa: S608 (constant text)
)


@dataclass(frozen=True, slots=True)
class _KeptRoster:
    """A district's roster on one day (competence → available managers) and every competence
    code, as read at ``version`` (``None``: not kept yet)."""

    roster: dict[str, int]
    competences: list[str]
    version: int | None = None

    def at(self, version: int) -> _KeptRoster:
        return _KeptRoster(self.roster, self.competences, version)


#: Rosters a reader keeps by (district, day). A handful of districts a day; emptied when full.
_rosters: weakref.WeakKeyDictionary[Reads, dict[tuple[str, date], _KeptRoster]] = (
    weakref.WeakKeyDictionary()
)
_ROSTERS_KEPT = 512


def _roster(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    return {str(c): int(n) for c, n in rows}


def _uncovered(roster: dict[str, int], competences: list[str]) -> bool:
    """Whether a competence is held by nobody serving the district (a gap is possible)."""
    return any(code not in roster for code in competences)


#: Per competence, the district's incidents that need it: one range of the links' own
#: (district, competence) index (a link is one incident and one competence; migration 0010)
_NEEDS = ReadStatement(
    "SELECT competence_code, count(*) FROM incident_competence WHERE district = :d "
    "GROUP BY competence_code ORDER BY competence_code"
)
_RECOMMENDATIONS = ReadStatement(
    "SELECT r.id, r.reference, r.title, r.status, r.progress, r.due_on, "  # noqa: S608
    f"r.due_on IS NOT NULL AND r.due_on < :today AND r.status NOT IN ({_CLOSED}) "
    "FROM recommendation AS r JOIN recommendation_district AS rd "
    "ON rd.recommendation_id = r.id WHERE rd.district_code = :d ORDER BY r.reference"
)


def _instant_text(value: Any) -> str:
    # As bound (Reads.bind_time): SQLite's stored text already, or an aware datetime (PostgreSQL)
    return value if isinstance(value, str) else value.isoformat()


def _time(value: Any) -> datetime | None:
    text = time_text(value)
    return None if text is None else time_value(text)


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _utc_months(rows: list[tuple[Any, ...]]) -> Counter[str]:
    return Counter({str(month): int(n) for month, n in rows})


@dataclass(frozen=True, slots=True)
class ProfileRows:
    """What :meth:`StatsReads.profile` read for one district."""

    district: tuple[str, str, str] | None  # code, name, city
    competences: list[str]  # every competence code
    counts: dict[str, list[tuple[str, int]]]  # "category" / "escalation_level" → (key, count)
    reported: tuple[datetime | None, datetime | None]  # first and last report
    utc_months: Counter[str]  # the tally's counts per UTC month
    open: int
    #: competence → available managers serving the district today (as ``available_coverage``),
    #: for every competence some active manager serving it holds validly (as
    #: ``held_competences``; 0 when all of them are absent)
    roster: dict[str, int]
    needs: list[tuple[str, int]]  # competence → the district's incidents that need it
    recommendations: list[dict[str, Any]]

    def gaps(self) -> list[tuple[str, int]]:
        """``(competence, incidents)`` as :meth:`StatsRepository.gaps`: the incidents that
        needed a competence nobody serving the district holds."""
        return [(code, n) for code, n in self.needs if code not in self.roster]


class StatsReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    def _day(self, value: date) -> Any:
        # as the engine stores Date: ISO text on SQLite, a date on PostgreSQL
        return value.isoformat() if self.reads.dialect == "sqlite" else value

    async def district(self, code: str) -> tuple[str, str, str] | None:
        rows = await self.reads.all(_DISTRICT, {"d": code})
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    async def incident_counts(self, group_by: str, district: str | None) -> list[tuple[str, int]]:
        """As :meth:`StatsRepository.incident_counts` without a date range."""
        rows = await self.reads.all(_COUNTS[(group_by, district is not None)], {"d": district})
        return [(str(k), int(n)) for k, n in rows]

    async def reported_range(self, district: str | None) -> tuple[datetime | None, datetime | None]:
        rows = await self.reads.all(_RANGE[district is not None], {"d": district})
        return _time(rows[0][0]), _time(rows[0][1])

    async def month_counts(
        self,
        district: str | None,
        month_starts: Sequence[tuple[datetime, str]],
        tz: Any,
        utc_months: Counter[str] | None = None,
    ) -> list[tuple[str, int]]:
        """As :meth:`StatsRepository.month_counts` without a date range; ``utc_months``: the
        tally's counts per UTC month, when read already (:meth:`profile`)."""
        if not month_starts:
            return []
        with_district = district is not None
        if utc_months is None:
            utc_months = _utc_months(
                await self.reads.all(_UTC_MONTHS[with_district], {"d": district})
            )
        moved: list[datetime] = []
        windows = self._windows(month_starts, tz)
        if windows is not None:
            statement = _WINDOW_ROWS[with_district].on(self.reads)
            for (at,) in await self.reads.all(statement, {"d": district, "windows": windows}):
                value = _time(at)
                assert value is not None
                moved.append(value)
        counts = local_month_counts(utc_months, moved, month_starts)
        return sorted((k, n) for k, n in counts.items() if n > 0)

    def _windows(self, month_starts: Sequence[tuple[datetime, str]], tz: Any) -> str | None:
        """:func:`local_month_windows` for these months as the JSON parameter of
        :data:`_WINDOW_ROWS` (``None``: no window, the zone's months are UTC's) — the same for
        every district and request until the incidents' range of months moves, so bound once
        per range and database kind."""
        first, last = month_starts[0][1], month_starts[-1][1]
        key = (first, last, str(tz), self.reads.dialect)
        if key in _WINDOWS:
            return _WINDOWS[key]
        pairs = [
            [_instant_text(self.reads.bind_time(low)), _instant_text(self.reads.bind_time(high))]
            for low, high in local_month_windows(first, last, tz)
        ]
        windows = orjson.dumps(pairs).decode() if pairs else None
        if len(_WINDOWS) >= _WINDOWS_KEPT:
            _WINDOWS.clear()
        _WINDOWS[key] = windows
        return windows

    async def profile(self, district: str, today: date) -> ProfileRows:
        """Everything a district profile reads but the month windows, in one round trip
        (:meth:`Reads.all_of`). The roster and the competences only when this reader keeps none
        for the district and day, or kept them at another version (then in a second round
        trip); the district's needs only when they can make a gap — when the roster leaves a
        competence uncovered (:meth:`ProfileRows.gaps`)."""
        d, on = {"d": district}, {"d": district, "today": self._day(today)}
        kept = _rosters.setdefault(self.reads, {})
        key = (district, today)
        known = kept.get(key)
        # The version first: each statement reads its own snapshot, in this order, so a roster
        # read with it is never older than the version it is kept with (app/models/roster.py).
        first: list[tuple[ReadStatement, dict[str, Any]]] = [(_ROSTER_VERSION, {})]
        if known is None:
            first += [(_ROSTER, on), (_COMPETENCES, {})]
        counted_needs = known is None or _uncovered(known.roster, known.competences)
        if counted_needs:
            first.append((_NEEDS, d))
        rows = await self.reads.all_of(
            [
                *first,
                (_DISTRICT, d),
                (_COUNTS[("category", True)], d),
                (_COUNTS[("escalation_level", True)], d),
                (_RANGE[True], d),
                (_UTC_MONTHS[True], d),
                (_OPEN_COUNT, d),
                (_RECOMMENDATIONS, on),
            ]
        )
        version_rows = rows.pop(0)
        version = int(version_rows[0][0]) if version_rows else None
        if known is None:
            roster = _KeptRoster(_roster(rows.pop(0)), [str(code) for (code,) in rows.pop(0)])
        elif version is not None and known.version == version:
            roster = known
        else:  # changed since: read again, after the version
            roster_rows, competence_rows = await self.reads.all_of(
                [(_ROSTER, on), (_COMPETENCES, {})]
            )
            roster = _KeptRoster(_roster(roster_rows), [str(code) for (code,) in competence_rows])
        needs = rows.pop(0) if counted_needs else []
        if not counted_needs and _uncovered(roster.roster, roster.competences):
            needs = await self.reads.all(_NEEDS, d)  # a gap since: count the needs after all
        if version is not None:
            if len(kept) >= _ROSTERS_KEPT:
                kept.clear()
            kept[key] = roster.at(version)
        found, categories, levels, reported, utc_months, open_count, recommendations = rows
        return ProfileRows(
            district=(str(found[0][0]), str(found[0][1]), str(found[0][2])) if found else None,
            competences=roster.competences,
            counts={
                "category": [(str(k), int(n)) for k, n in categories],
                "escalation_level": [(str(k), int(n)) for k, n in levels],
            },
            reported=(_time(reported[0][0]), _time(reported[0][1])),
            utc_months=_utc_months(utc_months),
            open=int(open_count[0][0]),
            roster=roster.roster,
            needs=[(str(c), int(n)) for c, n in needs],
            recommendations=[
                {
                    "id": uuid.UUID(str(uuid_text(str(r[0])))),
                    "reference": r[1],
                    "title": r[2],
                    "status": r[3],
                    "progress": int(r[4]),
                    "due_on": _date(r[5]),
                    "overdue": bool(r[6]),
                }
                for r in recommendations
            ],
        )
