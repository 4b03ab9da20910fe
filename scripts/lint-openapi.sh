#!/usr/bin/env bash
# Lint the committed openapi/openapi.json with Spectral (npm @stoplight/spectral-cli, exact
# versions from openapi/lint/package-lock.json):
#  1. `spectral:oas` — must report nothing at all (0 errors, 0 warnings, 0 infos, 0 hints);
#  2. the OWASP API security ruleset — every rule it reports must be triaged in openapi/README.md
#     (fixed, or why not); the counts per rule are printed.
set -euo pipefail
cd "$(dirname "$0")/../openapi/lint"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required for the OpenAPI lint (install Node.js >= 20)" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "-- spectral:oas"
npx --no-install spectral lint ../openapi.json --ruleset .spectral.yaml --fail-severity=hint \
  --format text

echo "-- OWASP API security ruleset (triage: openapi/README.md)"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
# Exit status 1 = findings (expected, triaged below); anything else is a failure of the tool.
set +e
npx --no-install spectral lint ../openapi.json --ruleset owasp.spectral.yaml --format json \
  --quiet --output "$report"
status=$?
set -e
if [ "$status" -gt 1 ]; then
  echo "spectral failed (exit $status)" >&2
  exit "$status"
fi
node - "$report" ../README.md <<'JS'
const fs = require("fs");
const [report, readme] = process.argv.slice(2);
const text = fs.readFileSync(report, "utf8").trim();
const results = text ? JSON.parse(text) : [];
const triage = fs.readFileSync(readme, "utf8");
const counts = new Map();
for (const r of results) counts.set(r.code, (counts.get(r.code) || 0) + 1);
let untriaged = 0;
for (const [code, n] of [...counts].sort((a, b) => b[1] - a[1])) {
  const known = triage.includes("`" + code + "`");
  if (!known) untriaged += 1;
  console.log(`${String(n).padStart(5)}  ${code}${known ? "" : "   <-- not triaged in openapi/README.md"}`);
}
console.log(`${String(results.length).padStart(5)}  findings in total`);
if (untriaged) process.exit(1);
JS
echo "OpenAPI lint: spectral:oas clean; OWASP findings all triaged"
