"""manager capacity check: 0 <= open_assignments <= max_open_assignments, in the database

The dispatch code keeps a manager's open assignments within capacity (app/services/dispatch/
slots.py); this CHECK is the last line of defence under it, on both databases. A write that would
break it fails at the statement (IntegrityError → 409), never silently overbooks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('manager', schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f('ck_manager_open_within_capacity'), 'open_assignments <= max_open_assignments'
        )


def downgrade() -> None:
    with op.batch_alter_table('manager', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_manager_open_within_capacity'), type_='check')
