"""Test set-up: one migrated database per run (SQLite file, or a fresh PostgreSQL database when
``KOKOMA_TEST_DATABASE_URL`` names a server), emptied after every test.

Requests go through the real app and commit for real — the same path production takes, so the
idempotency middleware, the capacity guarantees and concurrent requests are tested as they run.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core import clock as clock_module
from app.core.config import get_settings
from app.core.db import get_engine, reset_engine
from app.core.security import key_cache
from app.models.base import metadata

TEST_URL_ENV = "KOKOMA_TEST_DATABASE_URL"


def _create_pg_database(url: str) -> tuple[str, str]:
    base = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"kokoma_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), name


def _drop_pg_database(url: str, name: str) -> None:
    base = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    configured = os.environ.get(TEST_URL_ENV, "")
    if configured.startswith("postgres"):
        url, name = _create_pg_database(configured)
        yield url
        reset_engine()
        _drop_pg_database(configured, name)
    else:
        with tempfile.TemporaryDirectory(prefix="kokoma-test-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'test.db'}"
            reset_engine()


@pytest.fixture(scope="session", autouse=True)
def migrated_database(database_url: str) -> Iterator[str]:
    """Point the settings at the test database and migrate it to head (Alembic only)."""
    os.environ["DATABASE_URL"] = database_url
    # Generous by default, so that no test trips the per-key rate limit by accident
    # (tests/api/test_limits.py sets a small one where it tests the limiter itself).
    os.environ.setdefault("KOKOMA_RATE_LIMIT_PER_MINUTE", "1000000")
    get_settings.cache_clear()
    reset_engine()
    from app.core.migrations import upgrade

    upgrade("head")
    yield database_url


@pytest.fixture(autouse=True)
def clean_database(migrated_database: str) -> Iterator[None]:
    yield
    clock_module.set_clock(None)
    key_cache.clear()
    engine = get_engine()
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    # DELETE (children first), not TRUNCATE: on PostgreSQL a TRUNCATE of every table costs
    # about a second per test, a DELETE of a few rows a millisecond.
    with engine.begin() as conn:
        for table in tables:
            conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture
def client() -> Iterator[object]:
    from fastapi.testclient import TestClient

    from app.main import app

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def is_postgres(migrated_database: str) -> bool:
    return migrated_database.startswith("postgresql")


@pytest.fixture
def fixed_clock() -> Iterator[clock_module.Clock]:
    """Pin *now* to 2026-06-15 10:00 UTC (12:00 in Berlin)."""
    pinned = clock_module.Clock(
        tz=get_settings().tz, fixed_now=datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
    )
    clock_module.set_clock(pinned)
    yield pinned
    clock_module.set_clock(None)


# --- sign-in (OIDC): a real OpenID provider on loopback ------------------------------------------


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[object]:
    """One oidc-provider process per test run (per xdist worker), stopped at the end."""
    from tests.oidc_provider import OidcProvider

    provider = OidcProvider().start()
    yield provider
    provider.stop()


@contextmanager
def oidc_settings(issuer: str, **overrides: str) -> Iterator[None]:
    """Point kokoma at ``issuer`` (and any other ``KOKOMA_OIDC_*``) for the block."""
    from app.core.oidc import reset_jwks_caches
    from tests.oidc_provider import AUDIENCE

    values = {"KOKOMA_OIDC_ISSUER": issuer, "KOKOMA_OIDC_AUDIENCE": AUDIENCE, **overrides}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    get_settings.cache_clear()
    reset_jwks_caches()
    key_cache.clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        reset_jwks_caches()
        key_cache.clear()


@pytest.fixture
def oidc(oidc_provider: Any) -> Iterator[Any]:
    """kokoma configured to accept the provider's tokens (and API keys) for one test."""
    with oidc_settings(oidc_provider.issuer):
        yield oidc_provider
