"""The backends: ``rules`` (the FACS reasoner), ``hf`` (a checkpoint in-process), ``vllm`` (a checkpoint behind an
``emoreason serve`` server). Each turns :class:`~emoreason.face.evidence.Evidence` into an
:class:`~emoreason.report.EmotionReport`; :func:`get_backend` picks one by name.

Only ``hf`` needs torch (the ``model`` extra); ``vllm`` needs only the ``openai`` client (the ``client`` extra).
"""

from __future__ import annotations

from emoreason.backends.base import Backend, ModelBackend, ServerError
from emoreason.constants import BACKENDS


def backend_name(model: str | None = None, server: str | None = None) -> str:
    """The backend ``explain(model=..., server=...)`` means: vllm with a server, hf with a model, else rules."""
    return "vllm" if server is not None else "hf" if model is not None else "rules"


def get_backend(name: str, model: str | None = None, server: str | None = None,
                api_key: str | None = None) -> Backend:  # fmt: skip
    """The backend called ``name`` (one of :data:`~emoreason.constants.BACKENDS`), ready to explain.

    Args:
        model: ``hf``: a checkpoint directory (loaded now, so a bad one fails before any video is analysed);
            ``vllm``: a served model name (default: the checkpoint's LoRA adapter when served).
        server: ``vllm``: the server's URL (contacted now: an unreachable server fails at once).
        api_key: ``vllm``: the server's key (default ``$EMOREASON_API_KEY``).
    Raises:
        ValueError: an unknown name, or options that do not fit it. ImportError: the backend's extra is missing.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
    if name == "rules":
        if model is not None or server is not None:
            raise ValueError("the rules backend takes no model and no server")
        from emoreason.backends.rules import RulesBackend

        return RulesBackend()
    if name == "hf":
        if model is None or server is not None:
            raise ValueError("backend 'hf' needs model= (a checkpoint directory) and no server")
        try:
            from emoreason.backends.hf import load_hf_backend
        except ImportError as exc:
            raise ImportError(f"the hf backend needs the model extra: pip install 'emoreason[model]' ({exc})") from exc
        return load_hf_backend(str(model))
    if server is None:
        raise ValueError("backend 'vllm' needs server= (an `emoreason serve` URL)")
    from emoreason.backends.vllm import connect

    return connect(server, None if model is None else str(model), api_key)


__all__ = ["BACKENDS", "Backend", "ModelBackend", "ServerError", "backend_name", "get_backend"]
