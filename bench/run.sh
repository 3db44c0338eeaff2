#!/bin/sh
# Run the load benchmark from the repository root; arguments go to `python -m bench`
# (--duration SECONDS, --reps N, --variants sync,gthread).
set -eu
cd "$(dirname "$0")/.."
exec python -m bench "$@"
