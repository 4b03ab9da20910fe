"""incident list indexes: one per common filter, ending in the keyset order (created_at, id)

The list orders by ``(created_at DESC, id DESC)``; with ``(filter, created_at, id)`` a filtered
page is one index range read backwards, not a scan of every matching row plus a sort
(bench/README.md). ``(category, created_at, id)`` replaces ``ix_incident_category`` (its prefix).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 22:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.create_index(
            'ix_incident_district_created_at_id', ['district', 'created_at', 'id'], unique=False
        )
        batch_op.create_index(
            'ix_incident_status_created_at_id', ['status', 'created_at', 'id'], unique=False
        )
        batch_op.create_index(
            'ix_incident_category_created_at_id', ['category', 'created_at', 'id'], unique=False
        )
        batch_op.drop_index('ix_incident_category')


def downgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.create_index('ix_incident_category', ['category'], unique=False)
        batch_op.drop_index('ix_incident_category_created_at_id')
        batch_op.drop_index('ix_incident_status_created_at_id')
        batch_op.drop_index('ix_incident_district_created_at_id')
