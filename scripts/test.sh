#!/usr/bin/env bash
# The project's whole check, as CI runs it: setup (idempotent), then build,
# typecheck, lint (0 warnings), the docs site, and every test suite. Ends with
# one summary line: "tests: N passed, N failed, N skipped".
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export TURBO_TELEMETRY_DISABLED=1 TURBO_NO_UPDATE_NOTIFIER=1
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh

echo "== typecheck, lint, docs"
pnpm exec turbo run typecheck lint docs --output-logs=errors-only

echo "== tests"
results="$repo/.msb-test-results.json"
rm -f "$results"
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json="$results" || status=$?

node scripts/test-summary.mjs "$results"
exit "$status"
