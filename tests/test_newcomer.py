"""A newcomer's path: an unmigrated database is named and the fix said (CLI and API), the
OpenAPI export takes a file argument, logs are readable on a terminal, district codes match in
either case."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from app.api.openapi import render_openapi
from app.cli import cli
from app.core.config import get_settings
from app.core.db import reset_engine
from app.core.logging import configure_logging, resolve_format
from app.core.security import key_cache
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.factories import incident_body, make_key, manager_body, seed_reference, table_counts

ROOT = Path(__file__).resolve().parents[1]
FIX = "is not migrated: run `kokoma migrate`"


@pytest.fixture
def unmigrated_url(is_postgres: bool, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables): a SQLite file that exists, or a fresh PostgreSQL one."""
    if is_postgres:
        server = os.environ["KOKOMA_TEST_DATABASE_URL"]
        url, name = _create_pg_database(server)
        yield url
        reset_engine()
        _drop_pg_database(server, name)
    else:
        path = tmp_path / "empty.db"
        path.touch()
        yield f"sqlite:///{path}"


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point settings and engine at another database for one test; restore afterwards."""

    def point(url: str) -> None:
        monkeypatch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        reset_engine()

    yield point
    monkeypatch.undo()
    get_settings.cache_clear()
    reset_engine()
    key_cache.clear()


class TestUnmigratedDatabase:
    def test_api_answers_503_saying_so(
        self, unmigrated_url: str, point_at: Callable[[str], None]
    ) -> None:
        from fastapi.testclient import TestClient

        from app.main import create_app

        point_at(unmigrated_url)
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            response = client.get(
                "/api/v1/incidents", headers={"Authorization": "Bearer kok_whatever"}
            )
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            body = response.json()
            assert body["type"] == "/problems/database-not-migrated"
            assert "run `kokoma migrate`" in body["detail"]
            assert response.headers["Retry-After"].isdigit()
            ready = client.get("/readyz")
            assert ready.status_code == 503

    @pytest.mark.parametrize(
        "args",
        [
            ["api-key", "create", "--role", "admin", "--name", "first"],
            ["seed-demo"],
            ["retention", "run", "--dry-run"],
            ["worker", "--once"],
        ],
    )
    def test_cli_says_run_migrate(
        self, unmigrated_url: str, point_at: Callable[[str], None], args: list[str]
    ) -> None:
        point_at(unmigrated_url)
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert FIX in result.stderr
        assert "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit)  # typer.Exit(2), no error raised

    def test_cli_import_says_run_migrate(
        self, unmigrated_url: str, tmp_path: Path, point_at: Callable[[str], None]
    ) -> None:
        point_at(unmigrated_url)
        data = tmp_path / "incidents.csv"
        data.write_text(
            "external_id;title;district;category;escalation_level\nx-1;Graffiti;alpha;other;2\n",
            encoding="utf-8",
        )
        result = CliRunner().invoke(cli, ["import", "incidents", str(data)])
        assert result.exit_code == 2, result.output
        assert FIX in result.stderr

    def test_missing_default_file_is_named_and_not_created(self, tmp_path: Path) -> None:
        """The real console script in a folder without kokoma.db, default settings."""
        env = {
            k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KOKOMA_DATABASE_URL")
        }
        env["PYTHONPATH"] = str(ROOT)
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli",
                "api-key",
                "create",
                "--role",
                "admin",
                "--name",
                "first",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 2, completed.stderr
        assert completed.stdout == ""
        assert "Traceback" not in completed.stderr
        assert f"database sqlite:///{tmp_path.resolve() / 'kokoma.db'} {FIX}" in completed.stderr
        assert not (tmp_path / "kokoma.db").exists()

    def test_behind_and_unknown_revisions(
        self, tmp_path: Path, point_at: Callable[[str], None]
    ) -> None:
        from alembic.script import ScriptDirectory
        from sqlalchemy import text

        from app.core.db import get_engine
        from app.core.migrations import alembic_config, head_revision, upgrade

        head = head_revision()
        previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
        point_at(f"sqlite:///{tmp_path / 'old.db'}")
        upgrade(str(previous))
        result = CliRunner().invoke(cli, ["api-key", "create", "--role", "admin", "--name", "x"])
        assert result.exit_code == 2
        assert (
            f"is not migrated to this kokoma's schema (at {previous}, newest {head}): "
            "run `kokoma migrate`"
        ) in result.stderr
        with get_engine().begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffffffff'"))
        result = CliRunner().invoke(cli, ["seed-demo"])
        assert result.exit_code == 2
        assert "at schema revision ffffffff, which this kokoma does not know" in result.stderr

    def test_migrated_database_passes(self, migrated_database: str) -> None:
        result = CliRunner().invoke(cli, ["api-key", "create", "--role", "viewer", "--name", "v"])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("kok_")


class TestExportOpenapi:
    def test_file_argument(self, tmp_path: Path) -> None:
        from app.main import app

        target = tmp_path / "doc" / "openapi.json"
        result = CliRunner().invoke(cli, ["export-openapi", str(target)])
        assert result.exit_code == 0, result.output
        assert target.read_text(encoding="utf-8") == render_openapi(app.openapi())

    def test_output_option_still_works(self, tmp_path: Path) -> None:
        target = tmp_path / "spec.json"
        result = CliRunner().invoke(cli, ["export-openapi", "--output", str(target)])
        assert result.exit_code == 0, result.output
        assert json.loads(target.read_text(encoding="utf-8"))["openapi"].startswith("3.")

    def test_two_different_destinations_refused(self, tmp_path: Path) -> None:
        a, b = tmp_path / "a.json", tmp_path / "b.json"
        result = CliRunner().invoke(cli, ["export-openapi", str(a), "--output", str(b)])
        assert result.exit_code == 2
        assert "give one" in result.stderr
        assert not a.exists() and not b.exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestLogFormat:
    @pytest.fixture(autouse=True)
    def _restore(self) -> Iterator[None]:
        yield
        configure_logging(get_settings().log_level, get_settings().log_format)

    def test_auto_is_the_default(self) -> None:
        assert get_settings().log_format == "auto"

    @pytest.mark.parametrize(
        ("stream", "expected"), [(_Terminal(), "text"), (io.StringIO(), "json")]
    )
    def test_auto_follows_the_terminal(
        self, monkeypatch: pytest.MonkeyPatch, stream: Any, expected: str
    ) -> None:
        monkeypatch.setattr(sys, "stdout", stream)
        assert resolve_format("auto") == expected
        configure_logging("INFO", "auto")
        logging.getLogger("kokoma.test").info("hello %s", "there")
        line = stream.getvalue().strip().splitlines()[-1]
        if expected == "json":
            assert json.loads(line)["msg"] == "hello there"
        else:
            assert line.endswith("INFO kokoma.test [-] hello there")

    @pytest.mark.parametrize("forced", ["json", "text"])
    def test_setting_forces_either(self, monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
        monkeypatch.setattr(sys, "stdout", _Terminal())
        assert resolve_format(forced) == forced
        monkeypatch.setattr(sys, "stdout", io.StringIO())
        assert resolve_format(forced) == forced


class TestDistrictCodesEitherCase:
    def test_incident_create_filter_and_read(self, client: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        created = client.post(
            "/api/v1/incidents", json=incident_body(district="Alpha"), headers=admin
        )
        assert created.status_code == 201, created.text
        assert created.json()["district"] == "alpha"
        listed = client.get("/api/v1/incidents", params={"district": "ALPHA"}, headers=admin)
        assert [i["id"] for i in listed.json()["items"]] == [created.json()["id"]]
        patched = client.patch(
            f"/api/v1/incidents/{created.json()['id']}", json={"district": "BETA"}, headers=admin
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["district"] == "beta"

    def test_unknown_district_is_named(self, client: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        before = table_counts()
        response = client.post(
            "/api/v1/incidents", json=incident_body(district="Nowhere"), headers=admin
        )
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "Unknown district 'nowhere'" in response.json()["detail"]
        assert table_counts() == before

    def test_manager_recommendation_reference_and_stats(self, client: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        manager = client.post(
            "/api/v1/managers",
            headers=admin,
            json=manager_body(home_district="Alpha", districts=["GAMMA"]),
        )
        assert manager.status_code == 201, manager.text
        assert (manager.json()["home_district"], manager.json()["districts"]) == (
            "alpha",
            ["gamma"],
        )
        found = client.get("/api/v1/managers", params={"district": "Gamma"}, headers=admin)
        assert [m["id"] for m in found.json()["items"]] == [manager.json()["id"]]
        district = client.get("/api/v1/districts/Beta", headers=admin)
        assert district.status_code == 200 and district.json()["code"] == "beta"
        created = client.post(
            "/api/v1/districts",
            headers=admin,
            json={
                "code": "Epsilon",
                "name": "Epsilon",
                "city": "Teststadt",
                "neighbours": ["Delta"],
            },
        )
        assert created.status_code == 201, created.text
        assert (created.json()["code"], created.json()["neighbours"]) == ("epsilon", ["delta"])
        stats = client.get("/api/v1/stats/incidents", params={"district": "ALPHA"}, headers=admin)
        assert stats.status_code == 200, stats.text
        profile = client.get("/api/v1/districts/Alpha/profile", headers=admin)
        assert profile.status_code == 200, profile.text

    def test_csv_import(self, client: Any) -> None:
        seed_reference()
        admin = make_key("admin")
        body = (
            b"external_id;title;district;category;escalation_level\r\n"
            b"case-1;Graffiti;Alpha;other;2\r\n"
        )
        report = client.post(
            "/api/v1/imports/incidents", content=body, headers={**admin, "Content-Type": "text/csv"}
        )
        assert report.status_code == 200, report.text
        assert (report.json()["created"], report.json()["errors"]) == (1, [])
        listed = client.get("/api/v1/incidents", params={"district": "alpha"}, headers=admin)
        assert len(listed.json()["items"]) == 1


def test_demo_script_checks_the_port_before_it_makes_a_key() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        completed = subprocess.run(  # noqa: S603 - fixed argv
            ["bash", str(ROOT / "scripts" / "demo.sh")],  # noqa: S607 - bash from PATH
            env={**os.environ, "KOKOMA_HOST": "127.0.0.1", "KOKOMA_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode == 1
    assert completed.stdout == ""  # no key printed
    assert f"cannot serve on 127.0.0.1:{port}" in completed.stderr
    assert f"KOKOMA_PORT={port + 1}" in completed.stderr


def test_serve_on_a_fresh_folder_warns_and_answers_run_migrate(tmp_path: Path) -> None:
    """`kokoma serve` where no database exists yet: a warning on start, then 503 problems that
    say what to do."""
    import signal
    import time

    import httpx

    from tests.live.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KOKOMA_DATABASE_URL")}
    env.update(PYTHONPATH=str(ROOT), KOKOMA_LOG_LEVEL="WARNING")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        response = None
        while time.monotonic() < deadline and response is None:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/incidents",
                    headers={"Authorization": "Bearer kok_x"},
                    timeout=5,
                )
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                time.sleep(0.2)
        assert response is not None, log.read_text()
        assert response.status_code == 503
        assert response.json()["type"] == "/problems/database-not-migrated"
        assert "run `kokoma migrate`" in response.json()["detail"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    output = log.read_text()
    assert f"warning: database sqlite:///{tmp_path.resolve() / 'kokoma.db'} {FIX}" in output
    assert "Traceback" not in output
