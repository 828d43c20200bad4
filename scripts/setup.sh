#!/usr/bin/env bash
# Create .venv/ in the repository root (if missing) and install emoreason into it, editable.
# Usage: bash scripts/setup.sh [EXTRAS]   e.g. "media" (demo videos) or "dev" (tests, default).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
echo "emoreason installed in .venv with extras [${extras}]"
