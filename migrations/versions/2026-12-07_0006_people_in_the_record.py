"""people in the record: audit entries and timelines name who acted (subject and name)

``principal_subject`` / ``actor_subject`` are ``api_key:<id>``, ``oidc:<sub>`` (a person signed in
through the identity provider) or ``system``; ``principal_name`` / ``actor_name`` the key's name
or the person's display name at the time. Entries written before stay NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('principal_subject', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('principal_name', sa.String(length=200), nullable=True))
        batch_op.create_index(
            'ix_audit_event_principal_subject', ['principal_subject'], unique=False
        )
    for table in ('incident_event', 'recommendation_event'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('actor_subject', sa.String(length=300), nullable=True))
            batch_op.add_column(sa.Column('actor_name', sa.String(length=200), nullable=True))


def downgrade() -> None:
    for table in ('recommendation_event', 'incident_event'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('actor_name')
            batch_op.drop_column('actor_subject')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_principal_subject')
        batch_op.drop_column('principal_name')
        batch_op.drop_column('principal_subject')
