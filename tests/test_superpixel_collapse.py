"""Superpixel masks that collapse (issue 26 case 3): ``slic:50`` gave one segment on noisy or low-texture images,
and KernelSHAP / LIME then returned a constant map shown as full evidence.

Each image is built here and first shown to collapse with the segmentation as it was (scikit-image's SLIC,
compactness 10, on the image scaled by its own range). Now a segmentation with fewer than a quarter of the
requested segments falls back (SLIC on the image smoothed by a Gaussian of sigma 1, else a regular grid), warns,
and ``info`` says what was used and how many segments each image got.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import segmentation
from torch import nn

import cnnlens
from cnnlens.attribution._masks import _as_pixels, feature_masks

T = torch.Tensor
H = 48
_yy, _xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
DISK = (((_yy - 22) ** 2 + (_xx - 27) ** 2) < 10**2).float()


def image(kind: str, seed: int = 0) -> T:
    """(1, 3, H, H): ``flat`` 0.5 with noise of 0.001 (a constant image up to rounding), ``low_texture`` a disk of
    contrast 0.05 under noise of 0.02, ``noisy`` a disk of contrast 0.3 under noise of 0.3."""
    noise = torch.randn(3, H, H, generator=torch.Generator().manual_seed(seed))
    contrast, sd = {"flat": (0.0, 0.001), "low_texture": (0.05, 0.02), "noisy": (0.3, 0.3)}[kind]
    return (0.5 + contrast * DISK + sd * noise)[None]


def purity(labels: np.ndarray) -> float:
    """Share of pixels in segments that lie at least 90% inside or 90% outside the disk."""
    disk, kept = DISK.numpy(), 0
    for s in np.unique(labels):
        inside = disk[labels == s].mean()
        kept += int((labels == s).sum()) if inside >= 0.9 or inside <= 0.1 else 0
    return kept / labels.size


@pytest.mark.parametrize("n", [30, 50])
@pytest.mark.parametrize("kind", ["flat", "low_texture", "noisy"])
def test_a_collapsed_slic_falls_back_to_smoothed_slic_and_says_so(kind: str, n: int) -> None:
    x = image(kind)
    before = segmentation.slic(_as_pixels(x[0]), n_segments=n, compactness=10.0, start_label=0, channel_axis=-1)
    got = len(np.unique(before))
    assert got <= 2 < math.ceil(n / 4)  # what the mask was until now: one or two segments
    notes: list[str | None] = []
    with pytest.warns(cnnlens.CnnlensWarning, match=f"mask 'slic:{n}': too few segments on 1 of 1 images"):
        labels, counts = feature_masks(f"slic:{n}", x, notes)
    assert counts[0] >= math.ceil(n / 4) and int(labels.max()) + 1 == counts[0]
    assert notes[0] is not None and f"slic:{n} gave {got} segment" in notes[0] and "smoothed by a Gaussian" in notes[0]
    if kind != "flat":
        assert purity(labels[0].numpy()) > 0.85  # segments follow the disk


def test_a_segmentation_that_does_not_collapse_is_kept_without_a_warning() -> None:
    x = torch.full((1, 3, H, H), 0.5)  # exactly constant: SLIC places its regular seeds, about n segments
    x2 = 0.2 + 0.6 * DISK.expand(1, 3, H, H)
    ref = segmentation.slic(_as_pixels(x2[0]), n_segments=30, compactness=10.0, start_label=0, channel_axis=-1)
    notes: list[str | None] = []
    for im in (x, x2):
        labels, counts = feature_masks("slic:30", im, notes)
        assert counts[0] >= 8
    assert notes == [None, None]
    assert np.array_equal(labels[0].numpy(), ref)  # unchanged where nothing collapses


def test_a_collapsed_felzenszwalb_falls_back_to_a_grid() -> None:
    notes: list[str | None] = []
    with pytest.warns(cnnlens.CnnlensWarning, match="felzenszwalb gave 1 segment"):
        labels, counts = feature_masks("felzenszwalb", torch.full((2, 3, H, H), 0.5), notes)
    side = math.ceil(math.sqrt(H * H / 50))
    assert counts == [math.ceil(H / side) ** 2] * 2 and all("regular grid" in str(s) for s in notes)
    assert int(labels[0, side, side]) == math.ceil(H / side) + 1  # row-major cells of `side` pixels


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 3)
    ).eval()  # fmt: skip


@pytest.mark.parametrize("method", ["kernel_shap", "lime"])
def test_kernel_shap_and_lime_are_not_constant_on_a_noisy_image(method: str) -> None:
    x = torch.cat([image("noisy", 0), image("low_texture", 1), 0.2 + 0.6 * DISK.expand(1, 3, H, H)])
    with pytest.warns(cnnlens.CnnlensWarning, match="too few segments on 2 of 3 images"):
        e = cnnlens.explain(_net(), x, method, mask="slic:30", samples=120, target=0, progress=False)
    assert all(c >= 8 for c in e.info["segments"])
    assert [s is not None for s in e.info["mask_fallback"]] == [True, True, False]
    flat = e.attributions[:, 0].flatten(1)
    assert bool((flat.amax(1) > flat.amin(1)).all())  # on main: one segment, a constant map for the two


def test_no_fallback_key_when_nothing_collapsed() -> None:
    x = 0.2 + 0.6 * DISK.expand(1, 3, H, H)
    e = cnnlens.explain(_net(), x, "kernel_shap", mask="slic:30", samples=60, target=0, progress=False)
    assert "mask_fallback" not in e.info and e.info["segments"][0] >= 8
