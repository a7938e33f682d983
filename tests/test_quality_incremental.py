"""Deletion and insertion rows computed by incremental inference equal full forward passes.

Truth is the model itself: every curve is compared with the same metric run with ``incremental="off"`` (full
passes of every row, the path checked against hand computations in test_quality_curves.py); the bounding boxes
with a brute-force box of each row's changed pixels; the pass count with a hand count of multiply-adds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nets import init_, inputs
from cnnlens.data import sample_image
from cnnlens.quality import score
from cnnlens.quality._curve_rows import MAX_AREA, MIN_ROWS, mask_boxes
from cnnlens.quality._curves import pixel_ranks, step_counts
from test_contract import _assert_unchanged, _snapshot
from test_incremental import Branching, DepthwiseSeparable, Pointwise, StridedDilated

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor


def corner(b: int, h: int, w: int) -> T:
    """A map ranking pixels by their distance from the top-left corner (Chebyshev): early steps change a small
    square there."""
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return -torch.maximum(i, j).float().expand(b, 1, h, w)


def fixed(attr: T):
    return lambda model, x, target: attr


def both(metric: str, model, x: T, attr: T, **opts):
    """(incremental, full passes) scores of one metric."""
    on = score(metric, model, x, fixed(attr), progress=False, **opts)
    off = score(metric, model, x, fixed(attr), progress=False, incremental="off", **opts)
    assert off.info["inference"] == "full" and off.info["inference_reason"] == "turned off (incremental='off')"
    return on, off


def boxes_by_hand(attr: T, steps: int) -> np.ndarray:
    """(top, bottom, left, right) of the changed pixels of every row, from the changed masks themselves."""
    ranks = pixel_ranks(attr)
    counts = step_counts(attr.shape[-2] * attr.shape[-1], steps)
    out = []
    for r in ranks:
        for c in counts:
            ys, xs = np.nonzero((r < c).numpy())
            out.append((ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys) else (0, 0, 0, 0))
    return np.array(out)


def test_boxes_bound_exactly_the_changed_pixels() -> None:
    attr = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    attr[0, :, 2:5, 6:9] += 10  # a hot spot: its box first, then it grows
    got = mask_boxes(pixel_ranks(attr), step_counts(99, 33))
    np.testing.assert_array_equal(got.numpy(), boxes_by_hand(attr, 33))
    top, bottom, left, right = got[3].tolist()  # the 9 hottest pixels: the hot spot
    assert (top, bottom, left, right) == (2, 5, 6, 9) and got[1, 0] >= 2 and got[1, 1] <= 5


@pytest.mark.parametrize("net", [StridedDilated, DepthwiseSeparable])
@pytest.mark.parametrize("metric", ["deletion", "insertion"])
@pytest.mark.parametrize("output", ["probability", "logit"])
def test_small_boxes_run_incrementally_and_equal_full_passes(net, metric, output) -> None:
    model = init_(net())
    x = inputs(2, h=24, w=28, seed=3)
    on, off = both(metric, model, x, corner(2, 24, 28), steps=60, output=output, baseline="blur")
    assert on.info["inference"] == "incremental" and on.info["incremental_rows"] >= 2 * 2 * MIN_ROWS
    assert on.info["incremental_rows"] + on.info["full_rows"] == 2 * 61
    assert f"bounding box covers more than {MAX_AREA:.0%}" in on.info["inference_reason"]
    assert 0 < on.info["multiply_adds"] < 1 and on.passes < off.passes
    assert (off.curve[:, : on.info["incremental_rows"] // 2] - off.curve[:, :1]).abs().max() > 1e-3
    torch.testing.assert_close(on.curve, off.curve, atol=1e-5, rtol=0)
    torch.testing.assert_close(on.values, off.values, atol=1e-5, rtol=0)


def test_a_scattered_map_runs_full_passes_and_says_why() -> None:
    model = init_(DepthwiseSeparable())
    x = inputs(1, h=20, w=20, seed=4)
    attr = torch.randn(1, 1, 20, 20, generator=torch.Generator().manual_seed(1))  # step 1 already spans the image
    on, off = both("deletion", model, x, attr, steps=10)
    assert on.info["inference"] == "full" and on.info["incremental_rows"] == 0 and on.info["full_rows"] == 11
    assert on.info["inference_reason"].startswith(f"at most 0 rows per image change pixels inside a box of at most "
                                                  f"{MAX_AREA:.0%}")  # fmt: skip
    assert on.passes == off.passes
    torch.testing.assert_close(on.curve, off.curve, atol=0, rtol=0)


def test_a_model_that_does_not_trace_falls_back_and_says_so() -> None:
    model = init_(Branching())
    x = inputs(1, h=16, w=16, seed=5)
    on, off = both("insertion", model, x, corner(1, 16, 16), steps=64, baseline="zero")
    assert on.info["inference"] == "full" and "torch.fx cannot trace" in on.info["inference_reason"]
    torch.testing.assert_close(on.curve, off.curve, atol=0, rtol=0)


def test_passes_count_multiply_adds_by_hand() -> None:
    """1 x 1 convolutions only: a row costs its box's pixels (plus the head) of a full pass's multiply-adds."""
    model = init_(Pointwise())
    x, steps, attr = inputs(1, h=12, w=12, seed=6), 24, corner(1, 12, 12)
    s = score("deletion", model, x, fixed(attr), steps=steps, batch_size=1, progress=False)
    per_pixel, head = 3 * 4 + 4 * 5, 5 * 2
    bx = boxes_by_hand(attr, steps)
    area = (bx[:, 1] - bx[:, 0]) * (bx[:, 3] - bx[:, 2])
    small = (area > 0) & (area <= MAX_AREA * 144)
    fracs = (area[small] * per_pixel + head) / (144 * per_pixel + head)
    assert s.info["incremental_rows"] == small.sum() >= MIN_ROWS and s.info["multiply_adds"] == pytest.approx(
        fracs.mean()
    )
    # the inputs' pass (also the curve's first row), the clean run, the check row, the fractions, the rest whole
    assert s.passes == pytest.approx(1 + 1 + 1 + fracs.sum() + (steps + 1 - 1 - small.sum()))


def test_the_model_is_left_as_it_was() -> None:
    model = init_(DepthwiseSeparable())  # in-place activations, BatchNorm statistics
    model.features[0].weight.requires_grad_(False)
    before = _snapshot(model)
    s = score("insertion", model, inputs(1, h=20, w=20), fixed(corner(1, 20, 20)), steps=40, progress=False)
    assert s.info["inference"] == "incremental"
    _assert_unchanged(model, before)


def test_lite0_deletion_equals_full_passes(lite0) -> None:
    x = lite0.preprocess([sample_image("chelsea")])
    on, off = both("deletion", lite0, x, corner(1, 224, 224), steps=16, output="logit", batch_size=8)
    assert on.info["inference"] == "incremental" and on.info["incremental_rows"] >= 1  # steps 1-4: 6-25% boxes
    assert on.passes < off.passes
    assert (off.curve[0, :3] - off.curve[0, 0]).abs().max() > 0.1
    torch.testing.assert_close(on.curve, off.curve, atol=1e-5, rtol=0)
