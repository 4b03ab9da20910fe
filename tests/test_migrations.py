"""Alembic is the only way the schema is made: upgrade/downgrade work and models do not drift."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core.db import get_engine
from app.core.migrations import downgrade, head_revision, upgrade
from app.models.base import metadata


def test_models_and_migrations_do_not_drift() -> None:
    with get_engine().connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_database_is_at_head(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert head_revision() in response.json()["detail"]


def test_downgrade_to_base_and_upgrade_again(migrated_database: str) -> None:
    engine = get_engine()
    downgrade("base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade("head")
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables
    # a separate engine sees the same head
    other = create_engine(engine.url)
    with other.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    other.dispose()
