"""Deprecated: the ``hf`` backend moved to :mod:`emoreason.backends.hf` (``HFBackend``, ``load_hf_backend``)."""

import warnings

from emoreason.backends.hf import HFBackend, load_hf_backend

warnings.warn("emoreason.model.backend is deprecated: use emoreason.backends.hf (HFBackend, load_hf_backend) or "
              "emoreason.backends.get_backend('hf', model=...)", DeprecationWarning, stacklevel=2)  # fmt: skip

HFExplainer = HFBackend
load_explainer = load_hf_backend

__all__ = ["HFExplainer", "load_explainer"]
