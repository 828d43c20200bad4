"""Connectors: project face and audio tokens into the language model's embedding space."""

from __future__ import annotations

import torch
from torch import nn


class FaceConnector(nn.Module):
    """Two-layer MLP (LLaVA-1.5's projector): compressed face tokens -> LM embeddings; with ``num_aus``, one AU
    token per AU after them.

    An AU token says in the LM's own vocabulary what the compressor's AU head read: ``p * code + (1 - p) * off``,
    where ``p`` is the AU's probability, ``code`` starts as the LM's embedding of the AU's name ("AU12") and ``off``
    as the embedding of " no" (:meth:`init_au_embeddings`). Measured on the smol preset's toy faces (BENCHMARKS.md):
    the compressed tokens carry the AUs (a linear probe reads the emotion of 0.96 of held-out clips after 150
    steps), but the LM, reading them through the MLP alone, learned to write fluent answers of the wrong emotion;
    the AU tokens give it something it can copy.

    With ``none_token``, one more token after the AU tokens says whether any AU moved: ``q * none + (1 - q) * any``
    with ``q = prod(1 - p)`` over the AUs, ``none`` started as " no" and ``any`` as " AU". A neutral face is the
    absence of every AU token's code, and " no" is in every clip's AU tokens, so it tells the LM nothing: with AU
    tokens alone the smol LM's first observation token (" no" for a neutral clip, " AU" otherwise) did not depend
    on the face (the learning proof's v11 run, BENCHMARKS.md).

    With ``levels``, each AU token is followed by a level token that says how strongly:
    ``p * level(i) + (1 - p) * off``, where ``i`` is the compressor's intensity for the AU (0-5) and ``level(i)``
    interpolates between five embeddings started as the LM's " A" ... " E", the FACS letters its answers write
    ("AU12 D"): ``i = 3.6`` is 0.6 of " D" and 0.4 of " C". The pair reads as the answer's "AU12 D". Without it the
    smol LM wrote intensities unrelated to the face's (BENCHMARKS.md, v17). The letter added to the AU token itself
    (v18) made the letters follow the face but the AU code unreadable: an 80-step SFT read which AUs moved far worse.
    As a token of its own (v19) the letters follow the face and the AUs are read as well as without levels.
    """

    def __init__(self, in_dim: int, out_dim: int, num_aus: int = 0, none_token: bool = False, levels: bool = False):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.num_aus = num_aus
        self.none_token = bool(num_aus and none_token)
        if num_aus:
            self.au_code_embedding = nn.Parameter(torch.randn(num_aus, out_dim) * 0.02)
            self.au_off_embedding = nn.Parameter(torch.zeros(out_dim))
        if self.none_token:
            self.au_none_embedding = nn.Parameter(torch.zeros(out_dim))
            self.au_any_embedding = nn.Parameter(torch.randn(out_dim) * 0.02)
        self.levels = bool(num_aus and levels)
        if self.levels:
            self.au_level_embedding = nn.Parameter(torch.randn(5, out_dim) * 0.02)  # A ... E

    def forward(self, tokens: torch.Tensor, au_logits: torch.Tensor | None = None,
                au_intensity: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """``[B, K, Dv]`` (and ``au_logits [B, A]`` with AU tokens, ``au_intensity [B, A]`` with levels) ->
        ``[B, K (+ A (x 2 with levels) (+ 1)), Dt]``."""
        projected = self.proj(tokens)
        if not self.num_aus:
            return projected
        if au_logits is None or au_logits.shape[-1] != self.num_aus:
            got = None if au_logits is None else list(au_logits.shape)
            raise ValueError(f"au_logits: expected [B, {self.num_aus}] for the AU tokens, got {got}")
        present = torch.sigmoid(au_logits.float()).to(projected.dtype)[..., None]  # [B, A, 1]
        au_tokens = present * self.au_code_embedding + (1 - present) * self.au_off_embedding  # [B, A, Dt]
        if self.levels:
            if au_intensity is None or au_intensity.shape != au_logits.shape:
                got = None if au_intensity is None else list(au_intensity.shape)
                raise ValueError(f"au_intensity: expected {list(au_logits.shape)} for the AU levels, got {got}")
            steps = torch.arange(1, 6, device=au_intensity.device, dtype=torch.float32)  # A = 1 ... E = 5
            mix = (1 - (au_intensity.float().clamp(1, 5)[..., None] - steps).abs()).clamp(min=0)  # [B, A, 5]
            level = mix.to(projected.dtype) @ self.au_level_embedding  # [B, A, Dt]
            level = present * level + (1 - present) * self.au_off_embedding
            au_tokens = torch.stack([au_tokens, level], 2).flatten(1, 2)  # AU1, its level, AU2, its level, ...
        if self.none_token:
            none = nn.functional.logsigmoid(-au_logits.float()).sum(-1).exp().to(projected.dtype)[:, None, None]
            au_tokens = torch.cat([au_tokens, none * self.au_none_embedding + (1 - none) * self.au_any_embedding], 1)
        return torch.cat([projected, au_tokens.to(projected.dtype)], dim=1)

    @torch.no_grad()
    def init_au_embeddings(self, embeddings: nn.Module, tokenizer, au_codes) -> None:
        """Start the AU tokens from the LM's input ``embeddings``: each code as the mean embedding of its name's
        tokens (" AU12" -> " AU", "1", "2"), weighted towards the last so "AU1" and "AU12" differ; off and none as
        " no", any as " AU"; the levels as " A" ... " E"."""
        weight = embeddings.weight

        def embed(text: str) -> torch.Tensor:
            return weight[tokenizer(text, add_special_tokens=False)["input_ids"]].float().mean(0)

        for i, code in enumerate(au_codes):
            ids = tokenizer(f" {code}", add_special_tokens=False)["input_ids"]
            mix = torch.arange(1, len(ids) + 1, dtype=torch.float32, device=weight.device)
            self.au_code_embedding[i] = (weight[ids].float() * (mix / mix.sum())[:, None]).sum(0)
        self.au_off_embedding.copy_(embed(" no"))
        if self.none_token:
            self.au_none_embedding.copy_(embed(" no"))
            self.au_any_embedding.copy_(embed(" AU"))
        if self.levels:
            for i, letter in enumerate("ABCDE"):
                self.au_level_embedding[i] = embed(f" {letter}")


class AudioConnector(nn.Module):
    """Pool the audio encoder's frames to ``num_tokens`` and project them: [B, L, Da] -> [B, M, Dt].

    Adaptive average pooling over time keeps the order of events (the first token summarises the
    start of the clip); the MLP maps each pooled frame into the LM's space.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tokens: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool1d(frames.transpose(1, 2), self.num_tokens).transpose(1, 2)
        return self.proj(self.norm(pooled))  # [B, M, Dt]
