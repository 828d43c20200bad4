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
case ",${extras}," in
  *,dev,*|*,model,*|*,train,*|*,serve,*)
    # torch first and pinned, so that no dependency pulls a multi-GB CUDA build onto a CPU machine
    # (this machine kind ships the 2.13.0 CPU wheel locally; override with TORCH_SPEC).
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
    ;;
esac
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
echo "emoreason installed in .venv with extras [${extras}]"
