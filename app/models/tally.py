"""Incident counts kept by the database itself, for statistics and district profiles.

Two small tables hold how many incidents each district has per UTC calendar month (``YYYY-MM``
of ``reported_at`` in UTC) and category, and per UTC month and escalation level — and the whole
city has, under the district :data:`CITY_WIDE` (``''``, never a district code), so that city-wide
figures read a few hundred rows instead of adding up every district's. Triggers on
``incident`` (migration 0009: row triggers on SQLite, statement triggers with transition tables on
PostgreSQL) update them in the same statement as every insert, update and delete of an incident —
whichever code writes it (API, bulk import, erasure, retention) — so they are always equal to a
recount (tests/api/test_stats_tally.py). A count is the sum of its rows: on SQLite one row
(``slot`` 0), on PostgreSQL one row per transaction that changed it (``slot`` = its transaction
id: writers never wait for each other here), merged by the worker job ``stats.compact_tally``
(:func:`app.services.stats.compact_tally`). Readers skip counts of zero. Nothing else in the
application writes these tables. A later migration that rebuilds
``incident`` on SQLite (Alembic batch mode copies the table) drops its triggers: it must create
them again (``_sqlite_triggers`` in migration 0009).

Statistics read whole UTC months from here and count the rest (the parts of a date range that do
not cover a whole month; incidents whose local month in ``KOKOMA_TIMEZONE`` differs from their
UTC month) from ``incident`` itself (app/repositories/stats.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, PrimaryKeyConstraint, String
from sqlmodel import Field, SQLModel

from app.models.base import table_name

#: The ``district`` of the city-wide counts
CITY_WIDE = ""
#: ``Table.info`` key of a table with row triggers on SQLite (``incident``: these counts). Bulk
#: writers insert many rows per statement into it (app.repositories.bulk)
ROW_TRIGGERS = "sqlite_row_triggers"


def _counts_in_the_key(*key: str) -> tuple[PrimaryKeyConstraint, dict[str, bool]]:
    # A reader wants ``n`` of every key of one district: the key's own B-tree holds it — on
    # SQLite the table IS its key (WITHOUT ROWID: no second B-tree behind the key), on
    # PostgreSQL the key's index carries ``n`` (INCLUDE: index-only scans). A count's update
    # rewrites the entry it rewrote anyway; no other index (migration 0012).
    return PrimaryKeyConstraint(*key, postgresql_include=["n"]), {"sqlite_with_rowid": False}


class IncidentTallyCategory(SQLModel, table=True):
    # No index beyond the key: every incident write updates four counts (two on PostgreSQL's
    # own rows), and a second index holding ``n`` would be rewritten each time — on SQLite the
    # import ran at half speed with one. City-wide figures read the few hundred rows of ''.
    __tablename__ = table_name("incident_tally_category")
    __table_args__ = _counts_in_the_key("district", "month", "category", "slot")

    district: str = Field(sa_column=Column(String(64), primary_key=True))
    month: str = Field(sa_column=Column(String(7), primary_key=True))
    category: str = Field(sa_column=Column(String(40), primary_key=True))
    slot: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    n: int = Field(sa_column=Column(Integer, nullable=False))


class IncidentTallyLevel(SQLModel, table=True):
    __tablename__ = table_name("incident_tally_level")
    __table_args__ = _counts_in_the_key("district", "month", "escalation_level", "slot")

    district: str = Field(sa_column=Column(String(64), primary_key=True))
    month: str = Field(sa_column=Column(String(7), primary_key=True))
    escalation_level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    slot: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    n: int = Field(sa_column=Column(Integer, nullable=False))
