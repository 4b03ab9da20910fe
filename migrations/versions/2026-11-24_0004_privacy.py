"""privacy: when a reporter's / manager's personal data was erased

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 20:59:04.903586
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.base

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('reporter_erased_at', app.models.base.UTCDateTime(timezone=True),
                      nullable=True)
        )
    with op.batch_alter_table('manager', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('erased_at', app.models.base.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('manager', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_column('reporter_erased_at')
