#!/usr/bin/env bash
# The suite again on the lowest click, Flask, Werkzeug and redis-py that pyproject.toml allows
# (constraints/lowest.txt over the pinned set), in a venv of its own (.venv-lowest).
# The newest allowed releases are the ones constraints/dev.txt pins; scripts/test.sh tests those.
set -euo pipefail
cd "$(dirname "$0")/.."
combined="$(mktemp)"
trap 'rm -f "$combined"' EXIT
names="$(grep -v '^#' constraints/lowest.txt | cut -d= -f1 | paste -sd'|')"
grep -viE "^(${names})==" constraints/dev.txt > "$combined"
grep -v '^#' constraints/lowest.txt >> "$combined"
source scripts/venv.sh "${OTP_VENV_LOWEST:-.venv-lowest}" "$combined"
python -m pip freeze | grep -iE "^(${names})=="
python -m pytest -q -m "not browser and not slow" "$@"
