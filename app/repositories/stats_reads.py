"""Statistics and district profiles on the event loop (:mod:`app.core.reads`): the same SQL as
:class:`app.repositories.stats.StatsRepository` for the requests without a date range, written
once for both databases, one short statement each (the tally, one district's roster).

Values come back as the database stores them (SQLite: UUIDs as 32 hex digits, timestamps and
dates as text; PostgreSQL: text for ``uuid`` and ``timestamptz``) and are turned into the values
the unit-of-work path reads here, so that the service builds the very same response.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

from app.core.reads import Reads, ReadStatement, time_text, time_value, uuid_text
from app.models.incident import OPEN_INCIDENT_STATUSES
from app.models.recommendation import CLOSED_RECOMMENDATION_STATUSES
from app.models.tally import CITY_WIDE
from app.repositories.stats import local_month_counts, local_month_windows

_OPEN = ", ".join(f"'{s.value}'" for s in sorted(OPEN_INCIDENT_STATUSES))
_CLOSED = ", ".join(f"'{s.value}'" for s in sorted(CLOSED_RECOMMENDATION_STATUSES))
#: Window slots of one statement (unused ones are empty ranges); more windows: more statements.
WINDOW_SLOTS = 32

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
_WINDOW_ROWS = {
    district: ReadStatement(
        "SELECT reported_at FROM incident WHERE "  # noqa: S608 (constant text)
        + ("district = :d AND " if district else "")
        + "("
        + " OR ".join(
            f"(reported_at >= :lo{i} AND reported_at < :hi{i})" for i in range(WINDOW_SLOTS)
        )
        + ")"
    )
    for district in (False, True)
}
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
_NEEDS = ReadStatement(
    "SELECT ic.competence_code, count(DISTINCT i.id) FROM incident AS i "
    "JOIN incident_competence AS ic ON ic.incident_id = i.id WHERE i.district = :d "
    "GROUP BY ic.competence_code ORDER BY ic.competence_code"
)
_RECOMMENDATIONS = ReadStatement(
    "SELECT r.id, r.reference, r.title, r.status, r.progress, r.due_on, "  # noqa: S608
    f"r.due_on IS NOT NULL AND r.due_on < :today AND r.status NOT IN ({_CLOSED}) "
    "FROM recommendation AS r JOIN recommendation_district AS rd "
    "ON rd.recommendation_id = r.id WHERE rd.district_code = :d ORDER BY r.reference"
)


def _time(value: Any) -> datetime | None:
    text = time_text(value)
    return None if text is None else time_value(text)


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


class StatsReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    def _day(self, value: date) -> Any:
        # as the engine stores Date: ISO text on SQLite, a date on PostgreSQL
        return value.isoformat() if self.reads.dialect == "sqlite" else value

    async def district(self, code: str) -> tuple[str, str, str] | None:
        rows = await self.reads.all(_DISTRICT, {"d": code})
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    async def competences(self) -> list[str]:
        return [str(code) for (code,) in await self.reads.all(_COMPETENCES, {})]

    async def incident_counts(self, group_by: str, district: str | None) -> list[tuple[str, int]]:
        """As :meth:`StatsRepository.incident_counts` without a date range."""
        rows = await self.reads.all(_COUNTS[(group_by, district is not None)], {"d": district})
        return [(str(k), int(n)) for k, n in rows]

    async def reported_range(self, district: str | None) -> tuple[datetime | None, datetime | None]:
        rows = await self.reads.all(_RANGE[district is not None], {"d": district})
        return _time(rows[0][0]), _time(rows[0][1])

    async def month_counts(
        self, district: str | None, month_starts: Sequence[tuple[datetime, str]], tz: Any
    ) -> list[tuple[str, int]]:
        """As :meth:`StatsRepository.month_counts` without a date range."""
        if not month_starts:
            return []
        with_district = district is not None
        rows = await self.reads.all(_UTC_MONTHS[with_district], {"d": district})
        utc: Counter[str] = Counter({str(month): int(n) for month, n in rows})
        windows = local_month_windows(month_starts[0][1], month_starts[-1][1], tz)
        moved: list[datetime] = []
        empty = self.reads.bind_time(month_starts[0][0])
        for start in range(0, len(windows), WINDOW_SLOTS):
            params: dict[str, Any] = {"d": district}
            chunk = windows[start : start + WINDOW_SLOTS]
            for i in range(WINDOW_SLOTS):
                low, high = (
                    (self.reads.bind_time(chunk[i][0]), self.reads.bind_time(chunk[i][1]))
                    if i < len(chunk)
                    else (empty, empty)
                )
                params[f"lo{i}"], params[f"hi{i}"] = low, high
            for (at,) in await self.reads.all(_WINDOW_ROWS[with_district], params):
                value = _time(at)
                assert value is not None
                moved.append(value)
        counts = local_month_counts(utc, moved, month_starts)
        return sorted((k, n) for k, n in counts.items() if n > 0)

    async def open_incidents(self, district: str) -> int:
        rows = await self.reads.all(_OPEN_COUNT, {"d": district})
        return int(rows[0][0])

    async def roster(self, today: date, district: str) -> dict[str, int]:
        """competence → available managers serving ``district`` today (as
        ``available_coverage``), for every competence some active manager serving it holds
        validly (as ``held_competences``; 0 when all of them are absent)."""
        rows = await self.reads.all(_ROSTER, {"d": district, "today": self._day(today)})
        return {str(c): int(n) for c, n in rows}

    async def gaps(
        self, district: str, competences: Sequence[str], held: Collection[str]
    ) -> list[tuple[str, int]]:
        """``(competence, incidents)`` of ``district`` as :meth:`StatsRepository.gaps`: the
        incidents that needed a competence nobody serving the district holds (``held``)."""
        missing = {c for c in competences if c not in held}
        if not missing:
            return []
        rows = await self.reads.all(_NEEDS, {"d": district})
        return [(str(c), int(n)) for c, n in rows if str(c) in missing]

    async def recommendations(self, district: str, today: date) -> list[dict[str, Any]]:
        rows = await self.reads.all(_RECOMMENDATIONS, {"d": district, "today": self._day(today)})
        return [
            {
                "id": uuid.UUID(str(uuid_text(str(r[0])))),
                "reference": r[1],
                "title": r[2],
                "status": r[3],
                "progress": int(r[4]),
                "due_on": _date(r[5]),
                "overdue": bool(r[6]),
            }
            for r in rows
        ]
