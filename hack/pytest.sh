#!/usr/bin/env bash
# Run pytest from the project venv. "No tests collected" (exit 5) is a failure, never green.
set -uo pipefail
cd "$(dirname "$0")/.."
export TOOLS_BIN="${TOOLS_BIN:-$(.venv/bin/python hack/tools/build.py --print-bin | sed 's/^TOOLS_BIN=//')}"
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
