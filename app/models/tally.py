"""Incident counts kept by the database itself, for statistics and district profiles.

Two small tables hold how many incidents each district has per UTC calendar month (``YYYY-MM``
of ``reported_at`` in UTC) and category, and per UTC month and escalation level. Triggers on
``incident`` (migration 0009: row triggers on SQLite, statement triggers with transition tables on
PostgreSQL) update them in the same statement as every insert, update and delete of an incident —
whichever code writes it (API, bulk import, erasure, retention) — so they are always equal to a
recount (tests/api/test_stats_tally.py). A count that drops to zero keeps its row (with 0); readers
skip zeros. Nothing in the application writes these tables.

Statistics read whole UTC months from here and count the rest (the parts of a date range that do
not cover a whole month; incidents whose local month in ``KOKOMA_TIMEZONE`` differs from their
UTC month) from ``incident`` itself (app/repositories/stats.py).
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, String
from sqlmodel import Field, SQLModel

from app.models.base import table_name


class IncidentTallyCategory(SQLModel, table=True):
    __tablename__ = table_name("incident_tally_category")

    district: str = Field(sa_column=Column(String(64), primary_key=True))
    month: str = Field(sa_column=Column(String(7), primary_key=True))
    category: str = Field(sa_column=Column(String(40), primary_key=True))
    n: int = Field(sa_column=Column(Integer, nullable=False))


class IncidentTallyLevel(SQLModel, table=True):
    __tablename__ = table_name("incident_tally_level")

    district: str = Field(sa_column=Column(String(64), primary_key=True))
    month: str = Field(sa_column=Column(String(7), primary_key=True))
    escalation_level: int = Field(sa_column=Column(Integer, primary_key=True))
    n: int = Field(sa_column=Column(Integer, nullable=False))
