"""incident tally: the counts in the key's own B-tree

A district profile and the incident statistics read ``n`` of every key of one district (a few
hundred rows). The tallies' only index is their key, and ``n`` lived in the table behind it: one
table lookup per row. Now the key's B-tree holds ``n``: on SQLite the tables are rebuilt
``WITHOUT ROWID`` (the table IS its key: one B-tree instead of two, so a count's update writes
less than before), on PostgreSQL the key's index carries ``n`` (``INCLUDE``: index-only scans).
No second index holding ``n``, which halved the SQLite import when it was tried
(app/models/tally.py). The three tally statements of a district profile: 393 → 171 µs on
SQLite, ≈ 1,000 → 580 µs of server CPU on PostgreSQL (bench/README.md).

SQLite cannot change a table's kind in place: each tally is copied into a new table, the old one
dropped and the new one renamed. The tally triggers on ``incident`` name these tables, and
SQLite's rename checks every trigger: they are dropped first and created again from their own
stored text afterwards (they are the ones of migration 0009, unchanged).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 04:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, key column) of each tally
TALLIES = (("incident_tally_category", "category"), ("incident_tally_level", "escalation_level"))
_KEY_TYPES = {"category": "VARCHAR(40)", "escalation_level": "INTEGER"}


def _rebuild_sqlite(*, with_rowid: bool) -> None:
    bind = op.get_bind()
    triggers = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'incident' "
        "AND name LIKE 'incident_tally_%' ORDER BY name"
    ).all()
    for name, _ in triggers:
        op.execute(f"DROP TRIGGER {name}")
    for table, key in TALLIES:
        op.execute(
            f"CREATE TABLE {table}_new (district VARCHAR(64) NOT NULL, "
            f"month VARCHAR(7) NOT NULL, {key} {_KEY_TYPES[key]} NOT NULL, "
            "slot BIGINT NOT NULL, n INTEGER NOT NULL, "
            f"CONSTRAINT pk_{table} PRIMARY KEY (district, month, {key}, slot))"
            + ("" if with_rowid else " WITHOUT ROWID")
        )
        op.execute(
            f"INSERT INTO {table}_new (district, month, {key}, slot, n) "
            f"SELECT district, month, {key}, slot, n FROM {table}"
        )
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
    for _, sql in triggers:
        op.execute(sql)


def _pg_key(*, include: bool) -> None:
    for table, key in TALLIES:
        op.execute(
            f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
            f"ADD CONSTRAINT pk_{table} PRIMARY KEY (district, month, {key}, slot)"
            + (" INCLUDE (n)" if include else "")
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(with_rowid=False)
    else:
        _pg_key(include=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(with_rowid=True)
    else:
        _pg_key(include=False)
