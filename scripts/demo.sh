#!/usr/bin/env bash
# Install kokoma into .venv, migrate a SQLite database (./kokoma.db), load Erfurt's demo data,
# print an admin API key and serve the API on http://127.0.0.1:8000 (docs at /docs).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

.venv/bin/kokoma migrate
.venv/bin/kokoma seed-demo >/dev/null 2>&1
KEY=$(.venv/bin/kokoma api-key create --role admin --name "demo admin $(date +%F_%T)")
HOST=${KOKOMA_HOST:-127.0.0.1}
PORT=${KOKOMA_PORT:-8000}
cat <<MSG

  kokoma is starting on http://$HOST:$PORT  (interactive docs: http://$HOST:$PORT/docs)

  Your admin API key (shown once; create more with 'kokoma api-key create'):

      $KEY

  Try:
      curl -H "Authorization: Bearer $KEY" http://$HOST:$PORT/api/v1/incidents

MSG
exec .venv/bin/kokoma serve --host "$HOST" --port "$PORT"
