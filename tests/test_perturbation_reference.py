"""Occlusion and feature ablation equal Captum's (same windows, strides, masks, baselines) within 1e-5.

A small residual CNN covers overlapping and cut-off windows, rectangular windows, per-image masks and
baselines; EfficientNet-Lite0 gets one image with coarse windows and a superpixel mask.
"""

from __future__ import annotations

import pytest
import torch

import cnnlens
from _nets import inputs, residual_cnn
from cnnlens.attribution._baselines import single_baseline
from cnnlens.attribution._masks import feature_masks
from cnnlens.data import sample_image

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:captum"),
    pytest.mark.usefixtures("one_thread"),
]
T = torch.Tensor
ATOL = 1e-5


def captum_occlusion(model, x, target, window, stride, baseline) -> T:
    from captum.attr import Occlusion

    c = x.shape[1]
    return Occlusion(model).attribute(
        x, sliding_window_shapes=(c, *window), strides=(c, *stride), baselines=baseline, target=target
    )


def captum_ablation(model, x, target, mask, baseline) -> T:
    from captum.attr import FeatureAblation

    return FeatureAblation(model).attribute(x, baselines=baseline, target=target, feature_mask=mask)


@pytest.mark.parametrize(
    ("window", "stride"),
    [((4, 4), (2, 2)), ((3, 5), (2, 3)), ((10, 10), (10, 10)), ((5, 5), (4, 4))],
)
def test_occlusion_equals_captum_on_a_small_cnn(window, stride) -> None:
    model = residual_cnn()
    x = inputs(b=2, h=10, w=10)
    base = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([1, 3])
    e = cnnlens.explain(model, x, "occlusion", target=target, window=window, stride=stride, baseline=base[:, None])
    ref = captum_occlusion(model, x, target, window, stride, base)
    torch.testing.assert_close(e.attributions, ref, atol=ATOL, rtol=0)


def test_occlusion_int_window_and_zero_baseline_equal_captum() -> None:
    model = residual_cnn()
    x = inputs(b=1, h=9, w=9)
    e = cnnlens.explain(model, x, "occlusion", target=2, window=3, stride=2, batch_size=5)
    ref = captum_occlusion(model, x, 2, (3, 3), (2, 2), 0.0)
    torch.testing.assert_close(e.attributions, ref, atol=ATOL, rtol=0)


def test_feature_ablation_equals_captum_with_shared_and_per_image_masks() -> None:
    model = residual_cnn()
    x = inputs(b=2, h=8, w=8)
    target = torch.tensor([0, 4])
    shared = feature_masks("grid:3", x)[0][:1]  # (1, 8, 8): 9 cells, cut at the border
    e = cnnlens.explain(model, x, "feature_ablation", target=target, mask=shared, baseline=0.5)
    ref = captum_ablation(model, x, target, shared[:, None], 0.5)
    torch.testing.assert_close(e.attributions, ref, atol=ATOL, rtol=0)

    per_image = torch.stack([shared[0], (torch.arange(64).view(8, 8) * 7) % 5])
    base = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    e = cnnlens.explain(model, x, "feature_ablation", target=target, mask=per_image, baseline=base[:, None])
    ref = captum_ablation(model, x, target, per_image[:, None], base)
    torch.testing.assert_close(e.attributions, ref, atol=ATOL, rtol=0)


def test_occlusion_and_ablation_equal_captum_on_efficientnet_lite0(lite0) -> None:
    x = lite0.preprocess([sample_image("chelsea")])
    black = single_baseline("black", x, lite0.preprocessing)
    with torch.no_grad():
        target = int(lite0.module(x).argmax(1))
    e = cnnlens.explain(lite0, x, "occlusion", window=(80, 64), stride=(72, 56), baseline="black", batch_size=8)
    ref = captum_occlusion(lite0.module, x, target, (80, 64), (72, 56), black)
    assert e.info["windows"] == 12 and e.passes == 1 + 12
    torch.testing.assert_close(e.attributions, ref, atol=ATOL, rtol=0)

    mask = feature_masks("slic:12", x)[0]
    e = cnnlens.explain(lite0, x, "region_occlusion", mask=mask, baseline="black", batch_size=8)
    ref = captum_ablation(lite0.module, x, target, mask[:, None], black)
    assert e.passes == 1 + int(mask.max()) + 1
    torch.testing.assert_close(e.attributions, ref, atol=ATOL, rtol=0)


def hand_occlusion(model, x, target: int, window: int, stride: int) -> T:
    """Every window starting inside the image (cut at the border), zero baseline; uncovered pixels get 0."""
    h, w = x.shape[-2:]
    total, cover = torch.zeros_like(x), torch.zeros_like(x)
    with torch.no_grad():
        fx = model(x)[:, target]
        for t in range(0, h, stride):
            for le in range(0, w, stride):
                occluded = x.clone()
                occluded[..., t : t + window, le : le + window] = 0
                total[..., t : t + window, le : le + window] += (fx - model(occluded)[:, target]).view(-1, 1, 1, 1)
                cover[..., t : t + window, le : le + window] += 1
    return total / cover.clamp(min=1)


@pytest.mark.parametrize(("size", "incremental"), [(32, "exact"), (58, "exact"), (58, "approximate"), (58, "off")])
def test_occlusion_with_a_stride_longer_than_the_window(size, incremental) -> None:
    """Stride 12 or 14, window 4: the last start on each axis lies past the border (36 > 32, 70 > 58) and is
    left out; at 58 the window starting at 56 is cut at the border. Equals a hand loop (Captum's ``Occlusion``
    refuses a stride longer than the window)."""
    model = residual_cnn()
    x = inputs(b=1, h=size, w=size)
    stride = 12 if size == 32 else 14
    e = cnnlens.explain(
        model, x, "occlusion", target=2, window=4, stride=stride, incremental=incremental, drill_down=1.0
    )
    assert e.info["windows"] == (9 if size == 32 else 25)
    if size == 58:
        assert e.info["inference"] == {"exact": "incremental", "approximate": "approximate", "off": "full"}[incremental]
    torch.testing.assert_close(e.attributions, hand_occlusion(model, x, 2, 4, stride), atol=ATOL, rtol=0)
