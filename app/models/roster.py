"""Which version of the roster a reader saw: one row the database itself changes with every write
that changes who serves a district with which valid certificate and who is absent.

A district profile counts, per competence, the active managers serving the district who hold a
valid certificate and are not absent today (:data:`app.repositories.stats_reads._ROSTER`, the
profile's costliest statement). That answer depends only on five tables and the day, and those
tables change seldom (a coordinator's edits), so a reader keeps it — with the competence codes —
per (district, day) together with the ``token`` it read just before it
(:class:`app.repositories.stats_reads.StatsReads`) and reads it again once the token differs.
While the kept roster covers every competence, no gap is possible and the profile does not count
the district's needs either. Triggers (migration 0013) give the row a new random token in every
transaction that inserts, deletes or updates ``manager`` (its status or home district),
``manager_district``, ``manager_competence``, ``absence`` or ``competence`` (its code) —
whichever code writes (API, CLI, erasure, a hand-written statement), committed together with
the change. On PostgreSQL the
trigger is a deferred constraint trigger (run at commit, once per transaction): the row is
locked only while its transaction commits, never while a writer still takes other locks, so it
orders no writer behind another and cannot deadlock.

A missing row (an emptied table) is read as "no version": nothing is kept then, each profile
reads its roster. A token is random, never a counter: a row deleted and made again must not
repeat a token a reader kept.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer
from sqlmodel import Field, SQLModel

from app.models.base import table_name

#: The ``id`` of the one row
ROSTER_ROW = 1


class RosterVersion(SQLModel, table=True):
    __tablename__ = table_name("roster_version")

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    token: int = Field(sa_column=Column(BigInteger, nullable=False))
