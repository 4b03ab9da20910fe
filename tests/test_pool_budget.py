"""Pool sizes that fit: workers × (pool + overflow) against the database's max_connections.

On PostgreSQL the numbers come from the run's real server (``pg_settings``); SQLite has no
connection limit, so nothing is ever said there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Settings, get_settings
from app.core.db import connection_budget_warning, get_engine

#: PostgreSQL's defaults: max_connections=100, superuser_reserved_connections=3.
DEFAULT_SERVER_ADMITS = 100 - 3


@pytest.fixture
def oversized_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Three workers with 40 + 10 connections each (150: more than a default server admits)."""
    monkeypatch.setenv("KOKOMA_WORKERS", "3")
    monkeypatch.setenv("KOKOMA_DB_POOL_SIZE", "40")
    monkeypatch.setenv("KOKOMA_DB_MAX_OVERFLOW", "10")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def test_defaults_fit_three_workers_on_a_default_server() -> None:
    defaults = Settings()
    assert 3 * (defaults.db_pool_size + defaults.db_max_overflow) <= DEFAULT_SERVER_ADMITS
    assert connection_budget_warning(get_engine(), defaults, 3) is None


def test_oversized_pool_is_named(oversized_pool: None, is_postgres: bool) -> None:
    warning = connection_budget_warning(get_engine(), get_settings(), 3)
    if not is_postgres:
        assert warning is None
        return
    assert warning is not None
    assert (
        "3 worker process(es) × (KOKOMA_DB_POOL_SIZE 40 + KOKOMA_DB_MAX_OVERFLOW 10) = 150"
        in warning
    )
    assert "max_connections" in warning and "PgBouncer" in warning
    assert connection_budget_warning(get_engine(), get_settings(), 1) is None  # 50 fits


def test_readyz_reports_the_warning(oversized_pool: None, client: Any, is_postgres: bool) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200  # ready: the advice does not take it out of service
    warnings = response.json()["warnings"]
    if is_postgres:
        assert len(warnings) == 1 and "= 150 connections exceed" in warnings[0]
    else:
        assert warnings == []


def test_readyz_has_no_warning_by_default(client: Any) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["warnings"] == []


def test_serve_warns_at_start(
    oversized_pool: None, monkeypatch: pytest.MonkeyPatch, is_postgres: bool
) -> None:
    import uvicorn

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.append(options))
    result = CliRunner().invoke(cli, ["serve", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert started and started[0]["workers"] == 3
    if is_postgres:
        assert "warning: 3 worker process(es)" in result.output
        assert "= 150 connections exceed" in result.output
    else:
        assert "warning" not in result.output
