"""The ``kokoma`` console script: ``api-key create`` prints only the key; ``seed-demo`` is
idempotent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from app.cli import cli
from app.core.db import session_scope
from app.core.security import hash_key
from app.models.reference import District
from app.models.system import ApiKey
from tests.factories import make_organisation, table_counts

KEY_RE = re.compile(r"^kok_[A-Za-z0-9_-]{43}$")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def stored_key(secret: str) -> ApiKey | None:
    with session_scope(write=False) as session:
        return session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).first()


class TestApiKeyCreate:
    def test_prints_only_the_key(self, runner, client) -> None:
        result = runner.invoke(cli, ["api-key", "create", "--role", "admin", "--name", "x"])
        assert result.exit_code == 0, result.output
        assert KEY_RE.match(result.stdout.strip()), repr(result.stdout)
        assert result.stdout.count("\n") == 1
        secret = result.stdout.strip()
        row = stored_key(secret)
        assert row is not None and (row.role, row.name) == ("admin", "x")
        response = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200

    def test_console_script_stdout_is_only_the_key(self, migrated_database) -> None:
        """The real process: no log line, banner or warning may reach stdout."""
        env = {**os.environ, "DATABASE_URL": migrated_database}
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "app.cli",
                "api-key",
                "create",
                "--role",
                "viewer",
                "--name",
                "from the shell",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        assert KEY_RE.match(completed.stdout.strip()), repr(completed.stdout)
        assert completed.stdout.count("\n") == 1
        assert stored_key(completed.stdout.strip()) is not None

    def test_partner_key_with_organisation(self, runner) -> None:
        organisation = make_organisation()
        result = runner.invoke(
            cli,
            [
                "api-key",
                "create",
                "--role",
                "partner",
                "--name",
                "ngo",
                "--organisation",
                str(organisation),
            ],
        )
        assert result.exit_code == 0, result.output
        row = stored_key(result.stdout.strip())
        assert row is not None and row.organisation_id == organisation

    @pytest.mark.parametrize(
        "args",
        [
            ["--role", "partner", "--name", "p"],
            ["--role", "manager", "--name", "m"],
            ["--role", "root", "--name", "r"],
            ["--role", "admin", "--name", ""],
            ["--role", "partner", "--name", "p", "--organisation", "not-a-uuid"],
            [
                "--role",
                "partner",
                "--name",
                "p",
                "--organisation",
                "00000000-0000-0000-0000-000000000001",
            ],
        ],
        ids=str,
    )
    def test_refused_prints_nothing_on_stdout(self, runner, args) -> None:
        before = table_counts()
        result = runner.invoke(cli, ["api-key", "create", *args])
        assert result.exit_code != 0
        assert result.stdout == ""
        assert result.stderr.startswith("error:")
        assert table_counts() == before


class TestSeedDemo:
    def test_idempotent(self, runner) -> None:
        first = runner.invoke(cli, ["seed-demo"])
        assert first.exit_code == 0, first.output
        after_first = table_counts()
        assert after_first["district"] >= 2
        assert after_first["organisation"] >= 4
        assert after_first["incident"] >= 1
        summary = json.loads(first.stderr)
        assert summary["incidents"] == after_first["incident"]

        second = runner.invoke(cli, ["seed-demo"])
        assert second.exit_code == 0, second.output
        assert table_counts() == after_first
        assert set(json.loads(second.stderr).values()) == {0}

    def test_pilot_districts_and_symmetric_neighbours(self, runner) -> None:
        from app.repositories.reference import DistrictRepository

        assert runner.invoke(cli, ["seed-demo"]).exit_code == 0
        with session_scope(write=False) as session:
            codes = set(session.scalars(select(District.code)))
            assert "ilversgehofen" in codes
            neighbours = DistrictRepository(session).neighbours_of(codes)
        assert neighbours["ilversgehofen"], "the pilot district has neighbours"
        for code, others in neighbours.items():
            for other in others:
                assert code in neighbours[other], f"{code} → {other} is not symmetric"
