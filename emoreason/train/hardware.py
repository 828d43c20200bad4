"""What the training hardware can do fast, read once at the start of a run: bf16 matrix multiplies, and whether
there is an accelerator at all.

bf16 autocast is the default of every recipe (TRL's default too) and is kept wherever the hardware runs bf16
natively: CUDA devices of compute capability 8.0 and newer, x86 CPUs with AVX512-BF16 or AMX (measured on an AMD
EPYC with ``avx512_bf16``: a 2048x576x1536 matmul at ~200 GFLOPS in bf16 against ~66 in fp32), and ARM CPUs with
the BF16 extension. Elsewhere bf16 is emulated and slower than fp32, so a run falls back to fp32 with a warning.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (x86: AVX512-BF16 or AMX; aarch64: the BF16 extension)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    if machine in ("aarch64", "arm64"):
        cpuinfo = Path("/proc/cpuinfo")
        return cpuinfo.is_file() and " bf16" in cpuinfo.read_text(errors="replace")
    return False


def has_accelerator() -> bool:
    return torch.cuda.is_available()


def bf16_supported(use_cpu: bool) -> bool:
    """Whether training on this machine's CPU (``use_cpu``) or its CUDA device can use bf16 autocast."""
    if use_cpu or not has_accelerator():
        return cpu_has_bf16()
    return torch.cuda.is_bf16_supported()


def resolve_precision(args) -> str:
    """Keep ``args.bf16`` (a TRL/transformers training config) only where the hardware runs bf16 natively; otherwise
    turn it off with a warning that says why. Returns the precision the run will use: "bf16", "fp16" or "fp32"."""
    if args.bf16 and not bf16_supported(args.use_cpu):
        where = "this CPU (no AVX512-BF16, AMX or ARM BF16)" if args.use_cpu or not has_accelerator() else \
            f"this GPU ({torch.cuda.get_device_name()}, compute capability < 8.0)"  # fmt: skip
        logger.warning("bf16: %s has no native bf16; training in float32 instead (bf16 would be emulated, slower)",
                       where)  # fmt: skip
        args.bf16 = False
        args.mixed_precision = "no"
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def for_inference(model):
    """``model`` in eval mode, its language model's weights in bf16 where its device runs bf16 natively (greedy
    held-out answers and self-improvement sampling from a freshly loaded checkpoint: 1.5x the float32 tokens/s on
    this CPU), else as is. Converts in place; do not use on a model that is still training.

    The face and audio paths (towers, compressor, connectors) stay in float32: they cost little next to decoding,
    and a CNN's BatchNorm statistics and the compressor's LayerNorms gain nothing from fewer bits. (A 60-step smol
    checkpoint answered differently in bf16 than in float32 with either cast; that was its undertrained answer tags,
    not this choice.)"""
    device = next(model.parameters()).device
    if bf16_supported(use_cpu=device.type == "cpu"):
        model.language_model.to(torch.bfloat16)
    return model.eval()
