#!/usr/bin/env bash
# Frontend contract: generate TypeScript types from openapi/openapi.json with openapi-typescript
# and type-check them together with ts-check/src/usage.ts (strict tsc); generate the
# @hey-api/openapi-ts client and type-check it with its driver, ts-check/src/driver.ts. Fails when the spec cannot
# be turned into a typed client, or when enums/nullable fields lose their precise types.
set -euo pipefail
cd "$(dirname "$0")/../ts-check"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required for the TypeScript contract check (install Node.js ≥ 18)" >&2
  exit 1
fi
# Exact versions from the committed package-lock.json; node_modules/ is .gitignored.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
rm -rf generated
npx --no-install openapi-typescript ../openapi/openapi.json --output generated/kokoma-api.ts \
  --enum-values --alphabetize --default-non-nullable false --silent
npx --no-install tsc --noEmit -p tsconfig.json
# A complete client (@hey-api/openapi-ts, fetch) and the driver that tests/live/
# test_generated_clients.py runs against a live server: strict tsc.
npx --no-install openapi-ts -i ../openapi/openapi.json -o generated/hey -c @hey-api/client-fetch \
  >/dev/null
npx --no-install tsc --noEmit -p tsconfig.client.json
echo "TypeScript clients: generated from openapi/openapi.json and type-checked"
