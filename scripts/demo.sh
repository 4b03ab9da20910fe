#!/usr/bin/env bash
# Install kokoma into .venv, migrate a SQLite database (./kokoma.db), load Erfurt's demo data,
# print an admin API key and serve the API on http://127.0.0.1:8000 (docs at /docs).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
HOST=${KOKOMA_HOST:-127.0.0.1}
PORT=${KOKOMA_PORT:-8000}

# The port first: a key printed for a server that then cannot start helps nobody.
if ! "$PYTHON" - "$HOST" "$PORT" <<'PY'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
    except OSError as exc:
        sys.exit(f"error: cannot serve on {host}:{port}: {exc.strerror} (is kokoma already "
                 f"running?). Choose another port: KOKOMA_PORT={port + 1} bash scripts/demo.sh")
PY
then
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

.venv/bin/kokoma migrate
.venv/bin/kokoma seed-demo >/dev/null 2>&1
KEY=$(.venv/bin/kokoma api-key create --role admin --name "demo admin $(date +%F_%T)")
cat <<MSG

  kokoma is starting on http://$HOST:$PORT  (interactive docs: http://$HOST:$PORT/docs)

  Your admin API key (shown once; create more with 'kokoma api-key create'):

      $KEY

  Try:
      curl -H "Authorization: Bearer $KEY" http://$HOST:$PORT/api/v1/incidents

MSG
exec .venv/bin/kokoma serve --host "$HOST" --port "$PORT"
