"""incident tally: counts per district, UTC month and category / escalation level, kept by triggers

Statistics and district profiles counted every matching incident per request (100,000 rows for
the city-wide figures). Two small tables now hold the counts per district, UTC month (``YYYY-MM``)
and category, and per district, UTC month and escalation level, and the same city-wide (district
``''``) (app/models/tally.py; no index beyond
the key, which every count update would rewrite); triggers on
``incident`` keep them equal to a recount in the same statement as every insert, update and
delete, whatever code writes: row triggers on SQLite (one row per count: writers take turns
anyway), statement triggers with transition tables on PostgreSQL (one grouped insert per statement,
also for COPY). On PostgreSQL each transaction adds its changes in rows of its own (``slot`` =
its transaction id), so no writer ever waits for another's tally row — a long import does not
hold back incidents created meanwhile, and no lock order between the tally and the reference
counter can deadlock —; the worker job ``stats.compact_tally`` merges them (readers sum them). ``(district, reported_at)`` serves one district's first and last
report and its part of a date range.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, key column) of each tally
TALLIES = (("incident_tally_category", "category"), ("incident_tally_level", "escalation_level"))
#: The district of the city-wide counts (a district code is never empty)
CITY = "''"
SQLITE_MONTH = "substr({row}.reported_at, 1, 7)"  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
PG_MONTH = "to_char({row}.reported_at AT TIME ZONE 'UTC', 'YYYY-MM')"


def _sqlite_triggers() -> list[str]:
    def add(table: str, key: str, row: str, district: str) -> str:
        month = SQLITE_MONTH.format(row=row)
        return (
            f"INSERT INTO {table} (district, month, {key}, slot, n) "
            f"VALUES ({district}, {month}, {row}.{key}, 0, 1) "
            f"ON CONFLICT (district, month, {key}, slot) DO UPDATE SET n = n + 1;"
        )

    def remove(table: str, key: str, row: str, district: str) -> str:
        month = SQLITE_MONTH.format(row=row)
        return (
            f"UPDATE {table} SET n = n - 1 WHERE district = {district} "
            f"AND month = {month} AND {key} = {row}.{key} AND slot = 0;"
        )

    insert = " ".join(
        add(t, k, "NEW", d) for t, k in TALLIES for d in ("NEW.district", CITY)
    )
    delete = " ".join(
        remove(t, k, "OLD", d) for t, k in TALLIES for d in ("OLD.district", CITY)
    )
    moved = " OR ".join(
        f"OLD.{c} IS NOT NEW.{c}"
        for c in ("district", "reported_at", "category", "escalation_level")
    )
    return [
        f"CREATE TRIGGER incident_tally_insert AFTER INSERT ON incident BEGIN {insert} END",
        f"CREATE TRIGGER incident_tally_delete AFTER DELETE ON incident BEGIN {delete} END",
        "CREATE TRIGGER incident_tally_update "
        "AFTER UPDATE OF district, reported_at, category, escalation_level ON incident "
        f"WHEN {moved} BEGIN {delete} {insert} END",
    ]


def _pg_statements() -> list[str]:
    def grouped(key: str, sources: list[tuple[str, str]]) -> str:
        rows = " UNION ALL ".join(
            f"SELECT r.district, {PG_MONTH.format(row='r')} AS month, r.{key} AS k, {sign} AS n "
            f"FROM {name} AS r"
            for name, sign in sources
        )
        # each district's counts, and the city-wide ones (district CITY)
        return (
            f"SELECT coalesce(district, {CITY}) AS district, month, k, sum(n) AS n "
            f"FROM ({rows}) AS x GROUP BY GROUPING SETS ((district, month, k), (month, k)) "
            "HAVING sum(n) <> 0 ORDER BY 1, month, k"
        )

    def append(table: str, key: str, sources: list[tuple[str, str]]) -> str:
        # slot = this transaction: the row is new, or one this transaction wrote before
        return (
            f"INSERT INTO {table} AS t (district, month, {key}, slot, n) "
            f"SELECT district, month, k, txid_current(), n FROM ({grouped(key, sources)}) AS d "
            f"ON CONFLICT (district, month, {key}, slot) DO UPDATE SET n = t.n + EXCLUDED.n;"
        )

    bodies = {
        "insert": " ".join(append(t, k, [("new_rows", "1")]) for t, k in TALLIES),
        "delete": " ".join(append(t, k, [("old_rows", "-1")]) for t, k in TALLIES),
        "update": " ".join(
            append(t, k, [("new_rows", "1"), ("old_rows", "-1")]) for t, k in TALLIES
        ),
    }
    referencing = {
        "insert": "NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    }
    out = []
    for event, body in bodies.items():
        out.append(
            f"CREATE FUNCTION incident_tally_{event}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN NULL; END $$"
        )
        out.append(
            f"CREATE TRIGGER incident_tally_{event} AFTER {event.upper()} ON incident "
            f"REFERENCING {referencing[event]} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION incident_tally_{event}()"
        )
    return out


def upgrade() -> None:
    op.create_table(
        "incident_tally_category",
        sa.Column("district", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "district", "month", "category", "slot", name=op.f("pk_incident_tally_category")
        ),
    )
    op.create_table(
        "incident_tally_level",
        sa.Column("district", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "district", "month", "escalation_level", "slot", name=op.f("pk_incident_tally_level")
        ),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_district_reported_at", ["district", "reported_at"], unique=False
        )
    sqlite = op.get_bind().dialect.name == "sqlite"
    month = (SQLITE_MONTH if sqlite else PG_MONTH).format(row="incident")
    for table, key in TALLIES:
        for district, by in (("district", "district, "), (CITY, "")):
            op.execute(
                f"INSERT INTO {table} (district, month, {key}, slot, n) "
                f"SELECT {district}, {month}, {key}, 0, count(*) FROM incident "
                f"GROUP BY {by}{month}, {key}"
            )
    for statement in _sqlite_triggers() if sqlite else _pg_statements():
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for event in ("insert", "delete", "update"):
        if sqlite:
            op.execute(f"DROP TRIGGER IF EXISTS incident_tally_{event}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS incident_tally_{event} ON incident")
            op.execute(f"DROP FUNCTION IF EXISTS incident_tally_{event}()")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_district_reported_at")
    op.drop_table("incident_tally_level")
    op.drop_table("incident_tally_category")
