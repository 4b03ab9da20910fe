#!/usr/bin/env bash
# Install kokoma with its dev tools into .venv and run the whole test suite:
# ruff, then pytest on SQLite, then pytest on PostgreSQL (started here if it is down).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check app tests migrations bench

echo "== ruff format --check"
.venv/bin/ruff format --check app tests migrations bench

echo "== import layers (.importlinter: api -> services -> repositories -> models/core)"
.venv/bin/lint-imports

echo "== pyright (standard mode over app/, settings in pyproject.toml)"
.venv/bin/pyright

echo "== TypeScript client from openapi/openapi.json"
bash scripts/check-ts-client.sh

echo "== OpenAPI lint (Spectral: spectral:oas, OWASP triage in openapi/README.md)"
bash scripts/lint-openapi.sh

# --- sign-in (OIDC) tests: a real OpenID provider (npm oidc-provider) run by Node ---------------
echo "== OpenID provider for the sign-in tests (tests/oidc)"
if ! command -v node >/dev/null 2>&1; then
  echo "Node.js (>= 18) is required: tests/api/test_oidc.py signs in at a real OpenID provider" >&2
  exit 1
fi
# Exact versions from the committed package-lock.json; node_modules/ is .gitignored.
if [ ! -d tests/oidc/node_modules ] \
    || [ tests/oidc/package-lock.json -nt tests/oidc/node_modules/.package-lock.json ]; then
  (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
fi
# --- end sign-in (OIDC) ---------------------------------------------------------------------

# --- docs pages (tests/live/test_docs_offline.py): headless Chromium, Debian's package ----------
echo "== Chromium for the /docs and /redoc browser test"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
# --- end docs pages ---------------------------------------------------------------------------

echo "== pytest on SQLite"
KOKOMA_TEST_DATABASE_URL=sqlite .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"

PG_URL=${KOKOMA_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "== starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
    sleep 1
  done
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "PostgreSQL is not reachable at 127.0.0.1:5432; the PostgreSQL run cannot happen." >&2
  exit 1
fi

echo "== pytest on PostgreSQL"
KOKOMA_TEST_DATABASE_URL=$PG_URL .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
