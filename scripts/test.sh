#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, integration, e2e) as root.
# Fails when pytest fails, when it collects no test, or when everything skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the layering contracts (setup.cfg [importlinter]): a broken layer fails CI
.venv/bin/lint-imports --no-cache >/dev/null || { .venv/bin/lint-imports --no-cache; exit 1; }
report=$(mktemp /tmp/contivctl-junit.XXXXXX.xml)
trap 'rm -f "$report"' EXIT
set +e
.venv/bin/python -m pytest -ra --durations=15 --junitxml="$report" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests" >&2
    exit 1
fi
.venv/bin/python - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = root.iter("testsuite")
tests = skipped = 0
for s in suites:
    tests += int(s.get("tests", 0)); skipped += int(s.get("skipped", 0))
print(f"test: {tests} tests, {skipped} skipped", file=sys.stderr)
if tests == 0 or tests == skipped:
    print("test: no test actually ran", file=sys.stderr)
    sys.exit(1)
PY
exit "$rc"
