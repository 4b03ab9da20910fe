"""Clients generated from the committed openapi/openapi.json, driven against a live server.

* Python: openapi-python-client (a pinned dev dependency) generates the ``kokoma_client`` package
  into a temporary directory; ``mypy --strict`` checks it together with
  tests/clients/python_driver.py; the driver then runs against ``uvicorn app.main:app``.
* TypeScript: @hey-api/openapi-ts (ts-check/package-lock.json) generates ts-check/generated/hey;
  strict ``tsc`` checks it with ts-check/src/driver.ts (scripts/check-ts-client.sh does the same
  in CI before pytest); ``tsx`` runs the driver against the server.

Each driver registers an incident, triages it, lists it with filters (typed items), ranks
candidates, offers the lead slot, accepts it with a manager key of its own and exports CSV —
through the client's auth option (no hand-set Authorization header) and without casts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import make_key, seed_reference
from tests.live.conftest import ROOT, LiveServer

SPEC = ROOT / "openapi" / "openapi.json"
TS_DIR = ROOT / "ts-check"
BIN = Path(sys.executable).parent
TIMEOUT = 300  # generation and type checks on a loaded 2-core machine


def _run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv: tools of this checkout
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _admin_token() -> str:
    return make_key("admin")["Authorization"].removeprefix("Bearer ")


def test_python_client(live_server: LiveServer, tmp_path: Path) -> None:
    seed_reference()
    package = tmp_path / "kokoma_client"
    _run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(SPEC),
            "--output-path",
            str(package),
            "--meta",
            "none",
        ],
        cwd=tmp_path,
    )
    assert (package / "api" / "incidents" / "incidents_list.py").is_file()
    driver = ROOT / "tests" / "clients" / "python_driver.py"
    _run(
        [
            str(BIN / "mypy"),
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy"),
            "kokoma_client",
            str(driver),
        ],
        cwd=tmp_path,
        env={"MYPYPATH": str(tmp_path)},
    )
    output = _run(
        [sys.executable, str(driver), live_server(), _admin_token()],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert "python client: ok" in output
    assert "exported 1 incident(s) as CSV" in output


def test_typescript_client(live_server: LiveServer) -> None:
    npx = shutil.which("npx")
    assert npx, "Node.js/npm is needed for the TypeScript client (scripts/test.sh)"
    assert (TS_DIR / "node_modules" / "@hey-api" / "openapi-ts").is_dir(), (
        "ts-check/node_modules is missing: run scripts/check-ts-client.sh (npm ci)"
    )
    seed_reference()
    _run(
        [
            npx,
            "--no-install",
            "openapi-ts",
            "-i",
            str(SPEC),
            "-o",
            "generated/hey",
            "-c",
            "@hey-api/client-fetch",
        ],
        cwd=TS_DIR,
    )
    _run([npx, "--no-install", "tsc", "--noEmit", "-p", "tsconfig.client.json"], cwd=TS_DIR)
    output = _run(
        [npx, "--no-install", "tsx", "src/driver.ts", live_server(), _admin_token()], cwd=TS_DIR
    )
    assert "typescript client: ok" in output
    assert "exported 1 incident(s) as CSV" in output


@pytest.fixture(autouse=True)
def _spec_is_committed() -> None:
    assert SPEC.is_file()
