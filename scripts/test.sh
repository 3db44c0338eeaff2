#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what it needs, then lint, types, tests.
# Python packages go into a venv of the project's own (.venv, or $OTP_VENV), pinned by
# constraints/dev.txt, so every machine tests exactly the versions CI passed with.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not browser" -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
# The captcha style's font pool (otp_service/captcha_style.py); the Docker image installs it too.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

source scripts/venv.sh "${OTP_VENV:-.venv}" constraints/dev.txt
python -m ruff check .
python -m ruff format --check --exclude '*.md' .
python -m mypy
python -m pytest "$@"
