"""Perturbation plumbing: forward passes follow each method's formula, batching changes nothing, masks and
baselines are what they say, bad masks and baselines raise clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens import CnnlensError
from cnnlens.attribution._baselines import inpaint_baseline, single_baseline
from cnnlens.attribution._masks import feature_masks, grid
from cnnlens.attribution.perturbation import top_segments
from cnnlens.data import sample_image
from cnnlens.models import Preprocessing

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class Recorder(nn.Module):
    """A small CNN that records the batch size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.fc = nn.Linear(16, 3)
        self.sizes: list[int] = []

    def forward(self, x: T) -> T:
        self.sizes.append(x.shape[0])
        return self.fc(self.net(x))


def chunks(n: int, size: int = 4) -> list[int]:
    return [size] * (n // size) + ([n % size] if n % size else [])


@pytest.mark.parametrize(
    ("name", "options", "rows"),
    [
        # B images x windows: ceil((8 - 4) / 3) + 1 = 3 per axis
        ("occlusion", {"window": 4, "stride": 3}, 3 * 9),
        ("occlusion", {"window": (8, 2), "stride": 2, "baseline": [0.0, 1.0]}, 2 * 3 * 4),  # two baselines
        ("feature_ablation", {"mask": "grid:4"}, 3 * 4),  # one row per segment
        ("feature_ablation", {"mask": "grid:4", "baseline": [0.0, 0.5, -1.0]}, 3 * 3 * 4),
        ("region_occlusion", {"mask": "grid:3x8"}, 3 * 3),
        ("feature_permutation", {"mask": "grid:4", "samples": 2}, 2 * 3 * 4),
        ("kernel_shap", {"mask": "grid:4", "samples": 100}, 3 * (1 + 2**4 - 2)),  # f(b) + every coalition
        ("kernel_shap", {"mask": "grid:2", "samples": 10}, 3 * (1 + 10)),  # 16 segments: f(b) + 10 sampled
        ("lime", {"mask": "grid:4", "samples": 5}, 3 * 5),
        ("rise", {"samples": 6, "cells": 2}, 3 * 6),
    ],
)
def test_forward_passes_follow_the_formula(name: str, options: dict, rows: int) -> None:
    model = Recorder()
    e = cnnlens.explain(model, X, name, batch_size=4, **options)
    per_baseline = rows // (len(options["baseline"]) if "baseline" in options else 1)
    expected = [3] + chunks(per_baseline) * (rows // per_baseline)
    assert model.sizes == expected  # the inputs' pass, then perturbations stacked 4 per pass
    assert e.passes == sum(expected)


def test_shapley_sampling_scores_each_distinct_coalition_once() -> None:
    model = Recorder()
    e = cnnlens.explain(model, X, "shapley_sampling", mask="grid:4", samples=8, batch_size=4)
    # 4 segments: prefixes of 8 permutations, at most the 2^4 - 1 coalitions that are not the full one
    assert all(c <= 15 for c in e.info["coalitions"])
    assert e.passes == sum(model.sizes) == 3 + sum(e.info["coalitions"])
    e2 = cnnlens.explain(Recorder(), X, "shapley_sampling", mask="grid:4", samples=200)
    assert e2.info["coalitions"] == [15, 15, 15]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("occlusion", {"window": 3, "stride": 2}),
        ("feature_ablation", {"mask": "grid:3", "baseline": [0.0, 1.0]}),
        ("feature_permutation", {"mask": "grid:4", "samples": 2}),
        ("shapley_sampling", {"mask": "grid:4", "samples": 5}),
        ("kernel_shap", {"mask": "grid:3", "samples": 40}),
        ("lime", {"mask": "grid:3", "samples": 20}),
        ("rise", {"samples": 10, "cells": 3}),
    ],
)
def test_batched_equals_unbatched(name: str, options: dict) -> None:
    one = cnnlens.explain(Recorder(), X, name, batch_size=1, seed=4, **options)
    many = cnnlens.explain(Recorder(), X, name, batch_size=7, seed=4, **options)
    torch.testing.assert_close(many.attributions, one.attributions, atol=1e-6, rtol=1e-5)
    assert many.passes == one.passes


def test_masks_grid_per_image_and_superpixels() -> None:
    labels, counts = feature_masks("grid:3x4", X)
    assert counts == [6, 6, 6] and labels.shape == (3, 8, 8)
    assert torch.equal(labels[0], grid(8, 8, (3, 4))) and labels[0, 7, 7] == 5 and labels[0, 2, 4] == 1
    expanded = labels[:, None].expand(3, 3, 8, 8)  # Captum's ShapleyValueSampling crashes on such a mask
    assert torch.equal(feature_masks(expanded, X)[0], labels)
    e = cnnlens.explain(Recorder(), X, "shapley_sampling", mask=expanded, samples=2)
    assert torch.equal(e.info["masks"], labels)
    mixed, counts = feature_masks(["grid:4", torch.zeros(8, 8, dtype=torch.long), "grid:8"], X)
    assert counts == [4, 1, 1] and (mixed[1] == 0).all()
    image = cnnlens.load_model("efficientnet_lite0").preprocess([sample_image("coffee")])[:, :, :96, :96]
    for spec, low, high in [
        ("slic:30", 10, 60),
        ("quickshift", 2, 400),
        ("felzenszwalb", 2, 400),
        ("watershed:30", 20, 40),
    ]:
        labels, (count,) = feature_masks(spec, image)
        assert low <= count <= high, (spec, count)
        assert torch.equal(labels.unique(), torch.arange(count)), spec  # consecutive labels, none empty


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.zeros(7, 8, dtype=torch.long), r"does not fit inputs of shape \(3, 3, 8, 8\)"),
        (torch.zeros(2, 8, 8, dtype=torch.long), "does not fit"),
        (torch.arange(3).view(1, 3, 1, 1).expand(1, 3, 8, 8), "shared by all channels"),
        (torch.zeros(8, 8), "integer tensor"),
        (torch.tensor([0, 2]).repeat(32).view(8, 8), "segment 1 is empty"),
        (-torch.ones(8, 8, dtype=torch.long), ">= 0"),
        (["grid:4"], "one per image"),
        ("slic", None),
        ("superpixels:10", "unknown mask"),
        ("grid:0", "positive"),
        (3.5, "mask must be"),
    ],
)
def test_bad_masks_raise_clear_errors(mask, match) -> None:
    if match is None:  # a valid spec, for contrast
        cnnlens.explain(Recorder(), X, "feature_ablation", mask=mask)
        return
    with pytest.raises(CnnlensError, match=match):
        cnnlens.explain(Recorder(), X, "feature_ablation", mask=mask)


def test_bad_baselines_and_options_raise_clear_errors() -> None:
    with pytest.raises(CnnlensError, match="does not fit inputs"):
        cnnlens.explain(Recorder(), X, "occlusion", baseline=torch.zeros(3, 5, 5))
    with pytest.raises(CnnlensError, match="does not fit inputs"):
        cnnlens.explain(Recorder(), X, "kernel_shap", baseline=torch.zeros(3, 2, 3, 8, 7))
    with pytest.raises(CnnlensError, match="window must be"):
        cnnlens.explain(Recorder(), X, "occlusion", window=(2, 0))
    with pytest.raises(CnnlensError, match="samples must be an int >= 1"):
        cnnlens.explain(Recorder(), X, "lime", samples=0)
    with pytest.raises(CnnlensError, match="at least 2 images"):
        cnnlens.explain(Recorder(), X[:1], "feature_permutation")


def test_averaged_baselines_are_the_mean_of_single_runs() -> None:
    runs = [cnnlens.explain(Recorder(), X, "feature_ablation", mask="grid:4", baseline=b).attributions for b in (0, 1)]
    both = cnnlens.explain(Recorder(), X, "feature_ablation", mask="grid:4", baseline=[0.0, 1.0])
    torch.testing.assert_close(both.attributions, (runs[0] + runs[1]) / 2)
    e = cnnlens.explain(Recorder(), X, "kernel_shap", mask="grid:4", baseline=["zero", 0.7, X.flip(0)], samples=14)
    assert e.delta.abs().max() < 1e-5  # sum = f(x) - mean over the baselines of f(baseline)


def test_noise_and_inpaint_baselines() -> None:
    imagenet = Preprocessing(input_size=(8, 8), resize=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    noise = single_baseline("noise", X, imagenet)
    assert torch.equal(noise, single_baseline("noise", X, imagenet))  # reproducible
    pixels = noise * torch.tensor(imagenet.std).view(1, 3, 1, 1) + torch.tensor(imagenet.mean).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.std() > 0.2  # uniform colours in [0, 1]
    ramp = torch.linspace(-1, 1, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16).contiguous()
    filled = inpaint_baseline(ramp, "grid:4")  # a smooth image is its own inpainting (interior segments)
    torch.testing.assert_close(filled[..., 4:12, 4:12], ramp[..., 4:12, 4:12], atol=1e-3, rtol=0)
    assert not torch.equal(inpaint_baseline(X, "grid:4"), X)
    e = cnnlens.explain(
        Recorder(), X, "feature_ablation", mask="grid:4", baseline=inpaint_baseline(X, "grid:4")[:, None]
    )
    assert e.attributions.abs().sum() > 0


def test_segment_values_views_and_spread() -> None:
    e = cnnlens.explain(Recorder(), X, "kernel_shap", mask="grid:4", samples=14)
    v, labels = e.info["segment_values"], e.info["masks"]
    assert v.shape == (3, 4) and labels.shape == (3, 8, 8)
    # Shapley methods spread a segment's value over its pixels and channels: the map sums to the values
    torch.testing.assert_close(e.attributions.sum((1, 2, 3)), v.sum(1), atol=1e-5, rtol=1e-5)
    top = top_segments(e.info, k=1)
    for i in range(3):
        best = int(v[i].argmax())
        assert torch.equal(top[i], (labels[i] == best) & (v[i, best] > 0))
    low = top_segments(e.info, k=4, positive=False)
    assert torch.equal(low, (v.gather(1, labels.flatten(1)).view(labels.shape) < 0))
    # ablation keeps Captum's convention: the segment's value at each of its pixels
    a = cnnlens.explain(Recorder(), X, "feature_ablation", mask="grid:4")
    assert torch.equal(a.attributions[:, 0, :4, :4], a.info["segment_values"][:, :1, None].expand(3, 4, 4))


def test_rise() -> None:
    class RegionSum(nn.Module):
        def forward(self, x: T) -> T:
            s = x[:, :, :4, :4].sum((1, 2, 3))
            return torch.stack([s, -s], 1)

    x = torch.rand(2, 3, 8, 8) + 1
    keep_all = cnnlens.explain(RegionSum(), x, "rise", samples=3, p=1.0, target=0)
    # every mask keeps everything: the map is f(x) everywhere
    torch.testing.assert_close(keep_all.attributions, RegionSum()(x)[:, 0].view(2, 1, 1, 1).expand(2, 3, 8, 8))
    e = cnnlens.explain(RegionSum(), x, "rise", samples=300, cells=4, target=0)
    inside, outside = e.attributions[:, 0, :4, :4].mean(), e.attributions[:, 0, 4:, 4:].mean()
    assert inside > 1.2 * outside


def test_inpaint_by_name_uses_the_method_mask() -> None:
    """``baseline="inpaint"`` needs the mask, so the engine hands the spec to the method; a method without a
    feature mask says what to pass instead."""
    with pytest.raises(CnnlensError, match="inpaint_baseline"):
        cnnlens.explain(Recorder(), X, "integrated_gradients", baseline="inpaint")
    named = cnnlens.explain(Recorder(), X, "feature_ablation", mask="grid:4", baseline=["inpaint", 0.0])
    filled = inpaint_baseline(X, "grid:4")[:, None]
    given = cnnlens.explain(
        Recorder(), X, "feature_ablation", mask="grid:4", baseline=torch.cat([filled, torch.zeros_like(filled)], 1)
    )
    torch.testing.assert_close(named.attributions, given.attributions)


def test_inpaint_baseline_by_name_uses_the_method_mask() -> None:
    named = cnnlens.explain(Recorder(), X, "feature_ablation", mask="grid:4", baseline="inpaint")
    explicit = cnnlens.explain(
        Recorder(), X, "feature_ablation", mask="grid:4", baseline=inpaint_baseline(X, "grid:4")[:, None]
    )
    torch.testing.assert_close(named.attributions, explicit.attributions)
