"""roster version: one row whose token every change of the roster replaces, by triggers

A district profile's roster (per competence, the active managers serving the district with a
valid certificate, and how many are not absent) was its costliest statement: ≈ 0.45 ms on SQLite
and ≈ 1.7 ms of PostgreSQL's CPU per profile at 5,000 managers. It depends on four tables that
change seldom. ``roster_version`` holds one row (``id`` 1) with a random ``token``; triggers
replace the token in every transaction that changes ``manager`` (inserted, deleted, or its
``status`` or ``home_district`` updated), ``manager_district``, ``manager_competence``,
``absence`` or the competence codes, and a reader keeps a roster (and the competence codes) per
district and day with the token it read before it (app/models/roster.py). A profile whose kept
roster covers every competence needs no count of the district's needs either (no gap possible).

- SQLite: row triggers (writers take turns anyway).
- PostgreSQL: deferred constraint triggers, run at commit; the function replaces the token once
  per transaction (a transaction-local setting remembers it did). The row is locked only while
  its transaction commits, after every other lock it takes: no writer waits for another here
  before that, and no lock order can deadlock. ``TRUNCATE`` (no row triggers) replaces it by a
  statement trigger.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table → the columns whose update changes the roster (None: every update)
WATCHED: dict[str, tuple[str, ...] | None] = {
    "manager": ("status", "home_district"),
    "manager_district": None,
    "manager_competence": None,
    "absence": None,
    "competence": ("code",),
}
_SQLITE_NEW = (
    "INSERT INTO roster_version (id, token) VALUES (1, random()) "
    "ON CONFLICT (id) DO UPDATE SET token = excluded.token;"
)
_PG_NEW = (
    "INSERT INTO roster_version (id, token) "
    "VALUES (1, CAST(floor(random() * 9.2e18) AS bigint) - 4600000000000000000) "
    "ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token;"
)


def _events(table: str) -> list[tuple[str, str]]:
    columns = WATCHED[table]
    update = f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"
    return [("insert", "INSERT"), ("delete", "DELETE"), ("update", update)]


def upgrade() -> None:
    op.create_table(
        "roster_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_version")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_SQLITE_NEW)
        for table in WATCHED:
            for name, event in _events(table):
                op.execute(
                    f"CREATE TRIGGER roster_version_{table}_{name} AFTER {event} ON {table} "
                    f"BEGIN {_SQLITE_NEW} END"
                )
        return
    op.execute(_PG_NEW)
    op.execute(
        "CREATE FUNCTION roster_version_new() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF coalesce(current_setting('kokoma.roster_version_new', true), '') "
        "<> CAST(txid_current() AS text) THEN "
        f"{_PG_NEW} "
        "PERFORM set_config('kokoma.roster_version_new', CAST(txid_current() AS text), true); "
        "END IF; RETURN NULL; END $$"
    )
    for table in WATCHED:
        for name, event in _events(table):
            op.execute(
                f"CREATE CONSTRAINT TRIGGER roster_version_{table}_{name} AFTER {event} "
                f"ON {table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                "EXECUTE FUNCTION roster_version_new()"
            )
        op.execute(
            f"CREATE TRIGGER roster_version_{table}_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION roster_version_new()"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in WATCHED:
        for name, _ in [*_events(table), ("truncate", "")]:
            if sqlite:
                op.execute(f"DROP TRIGGER IF EXISTS roster_version_{table}_{name}")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS roster_version_{table}_{name} ON {table}")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS roster_version_new()")
    op.drop_table("roster_version")
