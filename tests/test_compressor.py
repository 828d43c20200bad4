"""The face-token compressor: shapes, masking, AU grounding, and the landmark region masks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from emoreason.au import AU_BY_CODE, AU_CODES, REGIONS  # noqa: E402
from emoreason.model.compressor import (  # noqa: E402
    REGION_LANDMARKS,
    CompressorOutput,
    FaceTokenCompressor,
    region_patch_mask,
)

D, P, T = 32, 16, 4  # hidden size, patches per frame (4x4 grid), frames
R = len(REGIONS)


@pytest.fixture
def compressor():
    torch.manual_seed(0)
    return FaceTokenCompressor(hidden_size=D, temporal_slots=2, max_frames=8).eval()


def _patches(batch=2, frames=T, patches=P):
    return torch.randn(batch, frames, patches, D)


@pytest.mark.parametrize(("queries", "slots"), [(1, 4), (2, 2), (1, 1)])
def test_output_shapes(queries, slots):
    model = FaceTokenCompressor(hidden_size=D, queries_per_region=queries, temporal_slots=slots, max_frames=8)
    out = model(_patches())
    assert isinstance(out, CompressorOutput)
    assert model.num_tokens == R * queries * slots
    assert out.tokens.shape == (2, model.num_tokens, D)
    assert out.au_logits.shape == (2, len(AU_CODES))
    assert model.encode_frames(_patches()).shape == (2, T, R * queries, D)
    assert torch.isfinite(out.tokens).all()


def test_padded_frames_do_not_change_the_output(compressor):
    clip = _patches(batch=1, frames=2)
    garbage = torch.randn(1, 3, P, D) * 1e3
    padded = torch.cat([clip, garbage], dim=1)  # [1, 5, P, D]: 2 real frames, 3 padded
    frame_mask = torch.tensor([[True, True, False, False, False]])
    with torch.no_grad():
        short = compressor(clip)
        long = compressor(padded, frame_mask=frame_mask)
    torch.testing.assert_close(long.tokens, short.tokens)
    torch.testing.assert_close(long.au_logits, short.au_logits)


def test_padding_in_the_middle_is_skipped_by_motion(compressor):
    # A frame with no face mid-clip: the next frame's motion is taken from the last real frame.
    clip = _patches(batch=1, frames=3)
    holed = torch.cat([clip[:, :1], torch.randn(1, 1, P, D) * 1e3, clip[:, 1:]], dim=1)
    holed_mask = torch.tensor([[True, False, True, True]])
    other = torch.cat([clip[:, :1], torch.randn(1, 1, P, D), clip[:, 1:]], dim=1)
    with torch.no_grad():
        out = compressor(holed, frame_mask=holed_mask)
        same = compressor(other, frame_mask=holed_mask)
    torch.testing.assert_close(out.tokens, same.tokens)


def test_region_mask_restricts_spatial_attention(compressor):
    region = REGIONS.index("mouth")
    patches = _patches()
    region_mask = torch.zeros(2, T, R, P, dtype=torch.bool)
    region_mask[:, :, region, 10:] = True  # the mouth sees patches 10..15 only
    region_mask[:, :, :region] = True
    changed = patches.clone()
    changed[:, :, :10] += torch.randn(2, T, 10, D)  # change only patches outside the mouth's mask
    with torch.no_grad():
        before = compressor.encode_frames(patches, region_mask=region_mask)
        after = compressor.encode_frames(changed, region_mask=region_mask)
    torch.testing.assert_close(after[:, :, region], before[:, :, region])
    assert not torch.allclose(after[:, :, 0], before[:, :, 0])  # brow sees all patches, so it moves


def test_empty_region_mask_falls_back_to_all_patches(compressor):
    patches = _patches()
    empty = torch.zeros(2, T, R, P, dtype=torch.bool)
    with torch.no_grad():
        out = compressor(patches, region_mask=empty)
        unrestricted = compressor(patches)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.au_logits).all()
    torch.testing.assert_close(out.tokens, unrestricted.tokens)


def test_au_logit_depends_only_on_its_region_tokens(compressor):
    out = compressor(_patches())
    slots = compressor.num_tokens // R
    for code in ("AU12", "AU4", "AU6"):
        region = REGIONS.index(AU_BY_CODE[code].region)
        (grad,) = torch.autograd.grad(out.au_logits[:, AU_CODES.index(code)].sum(), out.tokens, retain_graph=True)
        per_region = grad.abs().unflatten(1, (R, slots)).sum((0, 2, 3))  # [R]
        assert per_region[region] > 0
        assert torch.count_nonzero(per_region) == 1, f"{code} reads regions other than {REGIONS[region]}"


def test_au_codes_subset_orders_the_logits():
    model = FaceTokenCompressor(hidden_size=D, temporal_slots=1, au_codes=("AU12", "AU1"))
    assert model.au_region.tolist() == [REGIONS.index("mouth"), REGIONS.index("brow")]
    assert model(_patches()).au_logits.shape == (2, 2)


def test_backward_reaches_every_parameter():
    model = FaceTokenCompressor(hidden_size=D, temporal_slots=2, max_frames=T)
    region_mask = torch.rand(2, T, R, P) > 0.5
    out = model(_patches(), frame_mask=torch.tensor([[True] * T, [True, True, True, False]]), region_mask=region_mask)
    (out.tokens.square().mean() + out.au_logits.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected", "actual"),
    [
        ((2, 20, P, D), {}, "[B, T<=8, P, 32]", "[2, 20, 16, 32]"),  # too many frames
        ((2, T, P, 64), {}, "[B, T<=8, P, 32]", "[2, 4, 16, 64]"),  # wrong hidden size
        ((T, P, D), {}, "[B, T<=8, P, 32]", "[4, 16, 32]"),  # missing batch dim
        ((2, T, P, D), {"frame_mask": torch.ones(2, 3, dtype=torch.bool)}, "[2, 4]", "[2, 3]"),
        ((2, T, P, D), {"region_mask": torch.ones(2, T, 5, P, dtype=torch.bool)}, "[2, 4, 6, 16]", "[2, 4, 5, 16]"),
    ],
)
def test_shape_errors_show_expected_and_actual(compressor, shape, kwargs, expected, actual):
    with pytest.raises(ValueError) as info:
        compressor(torch.randn(shape), **kwargs)
    assert expected in str(info.value) and actual in str(info.value)


def test_invalid_construction_and_empty_clip(compressor):
    with pytest.raises(ValueError, match="num_heads"):
        FaceTokenCompressor(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="AU99"):
        FaceTokenCompressor(hidden_size=D, au_codes=("AU99",))
    with pytest.raises(ValueError, match="at least one real frame"):
        compressor(_patches(), frame_mask=torch.tensor([[True] * T, [False] * T]))


# -- region_patch_mask --------------------------------------------------------------------------------------------


def _mean_face(size=64.0, margin=4.0):
    """The landmark model's mean shape scaled into a square crop: [1, 1, 68, 2] pixels."""
    from emoreason.face.models import mean_shape

    shape = torch.as_tensor(mean_shape(), dtype=torch.float32)
    shape = (shape - shape.amin(0)) / (shape.amax(0) - shape.amin(0))
    return (shape * (size - 2 * margin) + margin)[None, None]


def test_region_landmarks_follow_regions():
    assert tuple(REGION_LANDMARKS) == REGIONS
    assert all(0 <= i < 68 for group in REGION_LANDMARKS.values() for i in group)


def test_region_patch_mask_places_regions_on_the_face():
    mask = region_patch_mask(_mean_face(), image_size=64, patch_size=8, dilate=0)  # 8x8 grid
    assert mask.shape == (1, 1, R, 64) and mask.dtype == torch.bool
    rows = torch.arange(64) // 8
    mouth, brow = mask[0, 0, REGIONS.index("mouth")], mask[0, 0, REGIONS.index("brow")]
    assert mouth.any() and brow.any()
    assert (rows[mouth] >= 4).all(), "mouth patches should lie in the lower half"
    assert (rows[brow] < 4).all(), "brow patches should lie in the upper half"
    assert not mask.all(-1).any(), "no region should cover the whole crop"


def test_region_patch_mask_dilates_and_handles_missing_faces():
    face = _mean_face().expand(1, 2, 68, 2).clone()
    face[0, 1, 30] = float("nan")  # frame 1: no face found
    tight = region_patch_mask(face, image_size=64, patch_size=8, dilate=0)
    loose = region_patch_mask(face, image_size=64, patch_size=8, dilate=1)
    assert (loose[0, 0] >= tight[0, 0]).all() and loose[0, 0].sum() > tight[0, 0].sum()
    assert loose[0, 1].all() and tight[0, 1].all()
    with pytest.raises(ValueError, match=r"expected \[B, T, 68, 2\], got \[2, 68, 2\]"):
        region_patch_mask(face[0], image_size=64, patch_size=8)


def test_region_patch_mask_feeds_the_compressor():
    model = FaceTokenCompressor(hidden_size=D, temporal_slots=1)
    mask = region_patch_mask(_mean_face(size=32.0, margin=2.0).expand(2, T, 68, 2), image_size=32, patch_size=8)
    assert mask.shape == (2, T, R, P)
    assert torch.isfinite(model(_patches(), region_mask=mask).tokens).all()
