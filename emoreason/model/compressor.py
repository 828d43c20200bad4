"""The face-token compressor: per-frame patch tokens -> a few AU-region face tokens per clip.

A language model cannot afford ``T x P`` patch tokens per clip, and facial emotion lives in a few regions and in
how they move. Following FaceTrack-MM (a few tokens for the main face), the compressor squeezes a clip into
``K = regions x queries_per_region x temporal_slots`` tokens (K <= 32) in two stages:

1. spatial: learned region queries (brow, eye, cheek, nose, mouth, jaw; see :data:`emoreason.au.REGIONS`)
   cross-attend, per frame, over the patch tokens, optionally restricted to each region's patches
   (:func:`region_patch_mask`, from the 68 landmarks);
2. temporal: per region stream, learned slot queries attend over the frames, with a time embedding and motion
   features (frame-to-frame differences) in the keys, so onset, apex and offset can each get a slot.

An AU head grounds the tokens in facial action (ExpLLM, Facial-R1): each AU's logit reads only the tokens of its own
region, which gives an auxiliary AU loss and AU probabilities to cite as evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from emoreason.au import AU_BY_CODE, AU_CODES, REGIONS

# iBUG 68-point landmark indices of each face region, keyed by the names in REGIONS.
REGION_LANDMARKS: dict[str, tuple[int, ...]] = {
    "brow": tuple(range(17, 27)),
    "eye": tuple(range(36, 48)),
    "cheek": (1, 2, 3, 13, 14, 15, 31, 35, 40, 41, 46, 47),
    "nose": tuple(range(27, 36)),
    "mouth": tuple(range(48, 68)),
    "jaw": (*range(5, 12), 57, 58, 59),
}
if tuple(REGION_LANDMARKS) != REGIONS:  # guard the data against drift from au.REGIONS at import time
    raise ValueError(f"REGION_LANDMARKS keys {tuple(REGION_LANDMARKS)} must equal REGIONS {REGIONS}")


@dataclass
class CompressorOutput:
    tokens: torch.Tensor  # [B, K, D], region-major: all temporal slots of region 0 first
    au_logits: torch.Tensor  # [B, A], in the order of the compressor's au_codes
    au_intensity: torch.Tensor | None = None  # [B, A] each AU's intensity (0-5) if present; with au_intensity only


def _per_au(pooled: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """One linear read-out per AU of its region's mean token: ``[B, A, D]`` -> ``[B, A]``."""
    return (pooled * weight).sum(-1) + bias


class _CrossAttentionBlock(nn.Module):
    """Pre-LayerNorm cross-attention of queries over a context, then a residual MLP."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.query_norm = nn.LayerNorm(hidden_size)
        self.context_norm = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(), nn.Linear(4 * hidden_size, hidden_size)
        )

    def forward(self, queries, context, allowed, key_extra=None):
        # queries [N, L, D], context [N, S, D], allowed [N, L, S] bool (each row has a True), key_extra [N, S, D]
        context = self.context_norm(context)
        keys = context if key_extra is None else context + key_extra
        blocked = (~allowed).repeat_interleave(self.attention.num_heads, dim=0)  # [N*heads, L, S]
        attended, _ = self.attention(self.query_norm(queries), keys, context, attn_mask=blocked, need_weights=False)
        hidden = queries + attended
        return hidden + self.mlp(self.mlp_norm(hidden))  # [N, L, D]


class FaceTokenCompressor(nn.Module):
    """Patch tokens ``[B, T, P, D]`` of a clip -> ``K`` face tokens ``[B, K, D]`` and AU logits ``[B, A]``."""

    def __init__(
        self,
        hidden_size: int,
        num_regions: int = len(REGIONS),
        queries_per_region: int = 1,
        temporal_slots: int = 4,
        num_heads: int = 4,
        max_frames: int = 16,
        au_codes: Sequence[str] = AU_CODES,
        au_intensity: bool = False,
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
        unknown = [code for code in au_codes if code not in AU_BY_CODE]
        if unknown:
            raise ValueError(f"au_codes: unknown AU codes {unknown}; expected codes from emoreason.au.AU_CODES")
        au_regions = [REGIONS.index(AU_BY_CODE[code].region) for code in au_codes]
        if any(index >= num_regions for index in au_regions):
            raise ValueError(f"num_regions={num_regions} is too few for the AU regions of au_codes (see REGIONS)")
        self.hidden_size, self.num_regions, self.queries_per_region = hidden_size, num_regions, queries_per_region
        self.temporal_slots, self.max_frames, self.au_codes = temporal_slots, max_frames, tuple(au_codes)
        streams = num_regions * queries_per_region
        # Stage 1: region queries, grouped by region in REGIONS order.
        self.region_queries = nn.Parameter(torch.randn(streams, hidden_size) * 0.02)
        self.spatial = _CrossAttentionBlock(hidden_size, num_heads)
        # Stage 2: per-stream slot queries over time; time embedding; motion projection added to the keys.
        self.slot_queries = nn.Parameter(torch.randn(streams, temporal_slots, hidden_size) * 0.02)
        self.time_embedding = nn.Parameter(torch.randn(max_frames, hidden_size) * 0.02)
        self.motion_proj = nn.Linear(hidden_size, hidden_size)
        self.temporal = _CrossAttentionBlock(hidden_size, num_heads)
        self.norm = nn.LayerNorm(hidden_size)
        # AU head: one weight vector and bias per AU, applied to the mean token of the AU's region.
        self.au_weight = nn.Parameter(torch.randn(len(au_codes), hidden_size) * 0.02)
        self.au_bias = nn.Parameter(torch.zeros(len(au_codes)))
        self.register_buffer("au_region", torch.tensor(au_regions, dtype=torch.long), persistent=False)
        # Intensity head (``au_intensity``): as the AU head, the intensity an AU has where it is present (0-5).
        # Measured on the smol preset's toy faces (BENCHMARKS.md): without it the intensities the LM wrote were
        # unrelated to the face's (r 0.06), while the compressor trained for them reads them (r 0.70).
        self.has_au_intensity = bool(au_intensity)
        if self.has_au_intensity:
            self.au_intensity_weight = nn.Parameter(torch.zeros(len(au_codes), hidden_size))
            self.au_intensity_bias = nn.Parameter(torch.full((len(au_codes),), 3.0))  # the middle of A-E

    @property
    def num_tokens(self) -> int:
        """K, the face tokens per clip."""
        return self.num_regions * self.queries_per_region * self.temporal_slots

    def forward(
        self,
        patch_tokens: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> CompressorOutput:
        """Compress a batch of clips.

        Args:
            patch_tokens: ``[B, T, P, D]`` face-tower outputs per frame; ``T <= max_frames``.
            frame_mask: ``[B, T]`` bool, True for real frames (clips shorter than T are padded); None = all real.
            region_mask: ``[B, T, R, P]`` bool, True where a patch belongs to a region; None = no restriction.

        Returns:
            :class:`CompressorOutput` with ``tokens [B, K, D]``, ``au_logits [B, A]`` and, with the intensity
            head, ``au_intensity [B, A]``.
        """
        frame_mask = self._check_inputs(patch_tokens, frame_mask, region_mask)
        frames = self.encode_frames(patch_tokens, frame_mask, region_mask)  # [B, T, R*q, D]
        tokens = self._encode_time(frames, frame_mask)  # [B, K, D]
        pooled = self._au_regions(tokens)
        intensity = _per_au(pooled, self.au_intensity_weight, self.au_intensity_bias) if self.has_au_intensity else None
        return CompressorOutput(tokens, _per_au(pooled, self.au_weight, self.au_bias), intensity)

    def encode_frames(self, patch_tokens, frame_mask=None, region_mask=None) -> torch.Tensor:
        """Stage 1: region queries attend over each frame's patches. ``[B, T, P, D]`` -> ``[B, T, R*q, D]``."""
        batch, frames, patches, dim = patch_tokens.shape
        if frame_mask is not None:  # padded frames may hold anything; zero them so they stay finite
            patch_tokens = patch_tokens.masked_fill(~frame_mask[:, :, None, None], 0.0)
        streams = self.num_regions * self.queries_per_region
        if region_mask is None:
            allowed = patch_tokens.new_ones(batch * frames, streams, patches, dtype=torch.bool)
        else:
            allowed = region_mask.bool().repeat_interleave(self.queries_per_region, dim=2).flatten(0, 1)
            allowed = allowed | ~allowed.any(-1, keepdim=True)  # an empty region falls back to all patches
        queries = self.region_queries.expand(batch * frames, -1, -1)  # [B*T, R*q, D]
        hidden = self.spatial(queries, patch_tokens.flatten(0, 1), allowed)  # [B*T, R*q, D]
        return hidden.unflatten(0, (batch, frames))  # [B, T, R*q, D]

    def _encode_time(self, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Stage 2: per stream, slot queries attend over the real frames. ``[B, T, R*q, D]`` -> ``[B, K, D]``."""
        batch, num_frames, streams, dim = frames.shape
        frames = frames.masked_fill(~frame_mask[:, :, None, None], 0.0)
        motion = self.motion_proj(_motion(frames, frame_mask))  # [B, T, R*q, D]
        context = frames + self.time_embedding[:num_frames, None, :]  # [B, T, R*q, D]
        context = context.transpose(1, 2).flatten(0, 1)  # [B*R*q, T, D]
        motion = motion.transpose(1, 2).flatten(0, 1)  # [B*R*q, T, D]
        allowed = frame_mask[:, None, None, :].expand(batch, streams, self.temporal_slots, num_frames)
        queries = self.slot_queries.expand(batch, -1, -1, -1).flatten(0, 1)  # [B*R*q, S, D]
        hidden = self.temporal(queries, context, allowed.flatten(0, 1), key_extra=motion)  # [B*R*q, S, D]
        return self.norm(hidden.reshape(batch, streams * self.temporal_slots, dim))  # [B, K, D], region-major

    def au_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """AU logits ``[B, A]`` from face tokens ``[B, K, D]``: each AU reads the mean token of its own region."""
        return _per_au(self._au_regions(tokens), self.au_weight, self.au_bias)  # [B, A]

    def _au_regions(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, K, D]`` -> ``[B, A, D]``: the mean token of each AU's region."""
        return tokens.unflatten(1, (self.num_regions, -1)).mean(2)[:, self.au_region]

    def _check_inputs(self, patch_tokens, frame_mask, region_mask) -> torch.Tensor:
        """Validate shapes (ValueError with expected vs actual); return the frame mask as bool ``[B, T]``."""
        shape = list(patch_tokens.shape)
        if patch_tokens.dim() != 4 or shape[-1] != self.hidden_size or shape[1] > self.max_frames:
            raise ValueError(f"patch_tokens: expected [B, T<={self.max_frames}, P, {self.hidden_size}], got {shape}")
        batch, frames, patches, _ = shape
        if frame_mask is None:
            frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=patch_tokens.device)
        elif list(frame_mask.shape) != [batch, frames]:
            raise ValueError(f"frame_mask: expected [{batch}, {frames}], got {list(frame_mask.shape)}")
        frame_mask = frame_mask.bool()
        if not bool(frame_mask.any(1).all()):
            raise ValueError("frame_mask: every clip needs at least one real frame (True)")
        expected = [batch, frames, self.num_regions, patches]
        if region_mask is not None and list(region_mask.shape) != expected:
            raise ValueError(f"region_mask: expected {expected}, got {list(region_mask.shape)}")
        return frame_mask


def _motion(frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Difference of each frame from the previous real frame (zero for the first). ``[B, T, N, D]`` in and out."""
    positions = torch.arange(frames.shape[1], device=frames.device).expand_as(frame_mask)
    last_real = torch.where(frame_mask, positions, -1).cummax(dim=1).values  # last real frame at or before t
    previous = torch.cat([last_real.new_full((last_real.shape[0], 1), -1), last_real[:, :-1]], dim=1)  # [B, T]
    index = previous.clamp(min=0)[:, :, None, None].expand_as(frames)
    delta = frames - frames.gather(1, index)
    return delta.masked_fill((previous < 0)[:, :, None, None], 0.0)


def region_patch_mask(landmarks: torch.Tensor, image_size: int, patch_size: int, dilate: int = 1) -> torch.Tensor:
    """Which patches of a face crop belong to each face region, from its 68 landmarks.

    Args:
        landmarks: ``[B, T, 68, 2]`` (x, y) in face-crop pixels, iBUG 68-point order; a frame with any
            non-finite landmark (no face) gets all patches for every region.
        image_size: side of the square face crop in pixels.
        patch_size: side of a vision-tower patch in pixels.
        dilate: grow each region's landmark bounding box by this many patches on every side.

    Returns:
        ``[B, T, R, P]`` bool with ``P = (image_size // patch_size) ** 2`` (row-major patch grid), R = len(REGIONS).
    """
    if landmarks.dim() != 4 or tuple(landmarks.shape[2:]) != (68, 2):
        raise ValueError(f"landmarks: expected [B, T, 68, 2], got {list(landmarks.shape)}")
    grid = image_size // patch_size
    cells = torch.arange(grid, device=landmarks.device)
    masks = []
    for region in REGIONS:
        points = landmarks[:, :, list(REGION_LANDMARKS[region])]  # [B, T, L, 2]
        low = torch.div(points.amin(2), patch_size, rounding_mode="floor").long() - dilate  # [B, T, 2] (col, row)
        high = torch.div(points.amax(2), patch_size, rounding_mode="floor").long() + dilate
        inside = (cells >= low[..., None].clamp(0, grid - 1)) & (cells <= high[..., None].clamp(0, grid - 1))
        masks.append(inside[..., 1, :, None] & inside[..., 0, None, :])  # [B, T, rows, cols]
    mask = torch.stack(masks, dim=2).flatten(3)  # [B, T, R, P]
    no_face = ~torch.isfinite(landmarks).all(-1).all(-1)  # [B, T]
    return mask | no_face[:, :, None, None]
