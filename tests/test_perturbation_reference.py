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
