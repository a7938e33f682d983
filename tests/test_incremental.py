"""Incremental occlusion: each changed copy computed only where its change can reach equals full re-inference.

Truth is the model itself: every incremental result is compared with full forward passes of the same changed
images (or with the same method run with ``incremental="off"``); the multiply-add count with a hand count.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

import cnnlens
from _nets import init_, inputs
from cnnlens.attribution.perturbation._drilldown import _coarse, rank_uncertainty, uncertainty
from cnnlens.attribution.perturbation.occlusion import windows
from cnnlens.core.model_guard import frozen
from cnnlens.data import sample_image
from cnnlens.models._incremental import Incremental

T = torch.Tensor


class StridedDilated(nn.Module):
    """Strides, dilation, groups, padded max / average pooling, explicit padding, a projected residual addition,
    channel concatenation, squeeze-excitation (a product with global reach), several activations, flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dil = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.grp = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.proj = nn.Conv2d(8, 8, 1, stride=2)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=(1, 2), dilation=(1, 2))
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.avg = nn.AvgPool2d(2, stride=1)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.se1, self.se2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: T) -> T:
        x = F.relu6(self.bn(self.stem(x)))
        x = F.hardtanh(self.dil(x), -1.0, 2.0) + x
        x = F.silu(self.grp(x))
        x = self.down(x) + self.proj(x)
        x = torch.cat([self.pool(x), torch.sigmoid(x)], 1)
        x = self.avg(self.pad(F.pad(x, (1, 0, 1, 0))))
        x = x * torch.sigmoid(self.se2(F.relu(self.se1(x.mean((2, 3), keepdim=True)))))
        x = x.amax((2, 3), keepdim=True)
        return self.fc(x.view(x.size(0), -1))


class DepthwiseSeparable(nn.Module):
    """MobileNet-style blocks: depthwise (groups = channels) then pointwise convolutions, in-place ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)]
        for c, s, out in ((8, 1, 8), (8, 2, 16), (16, 1, 16)):
            layers += [nn.Conv2d(c, c, 3, stride=s, padding=1, groups=c), nn.BatchNorm2d(c), nn.ReLU6(inplace=True)]
            layers += [nn.Conv2d(c, out, 1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x: T) -> T:
        return self.head(self.features(x))


class Branching(nn.Module):
    """Python control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x: T) -> T:
        y = self.conv(x)
        if y.sum() > 0:
            y = y.relu()
        return self.fc(y.mean((2, 3)))


def occluded(x: T, boxes: list[tuple[int, int, int, int]], base: T) -> T:
    rows = x.repeat(len(boxes), 1, 1, 1)
    for r, (t, b, le, ri) in enumerate(boxes):
        rows[r, :, t:b, le:ri] = base[0, :, t:b, le:ri]
    return rows


def incremental_logits(
    model: nn.Module, x: T, boxes: list[tuple[int, int, int, int]], base: T, **engine: bool
) -> tuple[T, T]:
    """(incremental logits, full forward logits) of ``x`` with each box replaced by ``base``."""
    h, w = x.shape[2:]
    with frozen(model), torch.no_grad():
        inc = Incremental(model, **engine)
        clean = inc.clean(x)
        bx = torch.tensor(boxes)
        bh, bw = int((bx[:, 1] - bx[:, 0]).max()), int((bx[:, 3] - bx[:, 2]).max())
        y, left = bx[:, 0].clamp(max=h - bh), bx[:, 2].clamp(max=w - bw)
        rows = occluded(x, boxes, base)
        patch = torch.stack([rows[r, :, a : a + bh, c : c + bw] for r, (a, c) in enumerate(zip(y, left, strict=True))])
        got, _ = inc.run(clean, patch, y, left, bx)
        return got, model(rows)


@pytest.mark.parametrize("net", [StridedDilated, DepthwiseSeparable])
@pytest.mark.parametrize(("window", "stride"), [(3, 1), (5, 3), ((4, 7), (6, 5))])
def test_incremental_equals_full_inference(net, window, stride) -> None:
    model = init_(net())
    x, base = inputs(1, h=19, w=22, seed=3), inputs(1, h=19, w=22, seed=4)
    wh = (window, window) if isinstance(window, int) else window
    st = (stride, stride) if isinstance(stride, int) else stride
    boxes = windows(19, 22, wh, st)  # overlapping with stride 1, cut at the border with (5, 3)
    got, ref = incremental_logits(model, x, boxes, base)
    assert (ref - ref[:1]).abs().max() > 1e-3  # the windows change the logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_boxes_at_borders_corners_and_single_pixels() -> None:
    model = init_(StridedDilated())
    x, base = inputs(1, h=17, w=17, seed=5), inputs(1, h=17, w=17, seed=6)
    boxes = [(0, 1, 0, 1), (16, 17, 16, 17), (0, 17, 0, 2), (15, 17, 0, 17), (8, 9, 3, 14), (0, 17, 0, 17)]
    got, ref = incremental_logits(model, x, boxes, base)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_lite0_occlusion_equals_full_passes(lite0, one_thread) -> None:
    x = lite0.preprocess([sample_image("chelsea")])
    opts = {"window": 64, "stride": 56, "baseline": "blur", "batch_size": 16}  # 16 windows, the last ones cut
    e = cnnlens.explain(lite0, x, "occlusion", **opts)
    ref = cnnlens.explain(lite0, x, "occlusion", incremental="off", **opts)
    assert e.info["inference"] == "incremental" and ref.info["inference"] == "full"
    assert 0.3 < e.info["multiply_adds"] < 1 and e.passes < ref.passes
    assert ref.attributions.abs().max() > 0.1
    torch.testing.assert_close(e.attributions, ref.attributions, atol=1e-5, rtol=0)


def test_feature_ablation_with_a_grid_and_region_occlusion_equal_full_passes() -> None:
    model = init_(DepthwiseSeparable())
    x = inputs(2, h=24, w=24, seed=7)
    for method, mask in (("feature_ablation", "grid:4"), ("region_occlusion", torch.arange(36).view(6, 6))):
        if isinstance(mask, T):
            mask = mask.repeat_interleave(4, 0).repeat_interleave(4, 1)
        base = ["zero", "blur"] if method == "feature_ablation" else "blur"
        e = cnnlens.explain(model, x, method, mask=mask, baseline=base)
        ref = cnnlens.explain(model, x, method, mask=mask, baseline=base, incremental="off")
        assert e.info["inference"] == "incremental"
        torch.testing.assert_close(e.attributions, ref.attributions, atol=1e-5, rtol=0)


class Pointwise(nn.Module):
    """Only 1x1 convolutions before the global pooling: a window changes exactly its own pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.fc = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 5, 1), nn.Linear(5, 2)

    def forward(self, x: T) -> T:
        return self.fc(self.b(self.a(x).relu()).mean((2, 3)))


def test_passes_count_multiply_adds() -> None:
    model = init_(Pointwise())
    x = inputs(2, h=12, w=12)
    e = cnnlens.explain(model, x, "occlusion", window=3, stride=3)  # 16 windows of 3 x 3 pixels
    per_pixel, head = 3 * 4 + 4 * 5, 5 * 2
    frac = (9 * per_pixel + head) / (144 * per_pixel + head)
    assert e.info["multiply_adds"] == pytest.approx(frac)
    # the inputs' pass, then per image one clean run and one check row, then the 16 windows' fractions
    assert e.passes == pytest.approx(2 + 2 * 2 + 2 * 16 * frac)


@pytest.mark.parametrize(
    ("model", "reason"),
    [(Branching(), "torch.fx cannot trace"), (nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(2)), "")],
)
def test_a_model_that_does_not_trace_falls_back_and_says_so(model, reason) -> None:
    x = inputs(1, h=10, w=10)
    model = init_(model) if reason else model
    if not reason:  # a forward hook: a traced graph would not run it
        model(x)
        model[0].register_forward_hook(lambda m, i, o: o * 2)
        reason = "forward hooks"
    e = cnnlens.explain(model, x, "occlusion", window=2, stride=2)
    ref = cnnlens.explain(model, x, "occlusion", window=2, stride=2, incremental="off")
    assert e.info["inference"] == "full" and reason in e.info["inference_reason"]
    assert ref.info["inference_reason"] == "turned off (incremental='off')"
    torch.testing.assert_close(e.attributions, ref.attributions, atol=1e-6, rtol=0)


def test_approximate_mode_reports_its_error_against_exact() -> None:
    model = init_(StridedDilated())
    x = inputs(2, h=24, w=24, seed=9)
    opts = {"window": 4, "stride": 2, "baseline": "zero"}
    a = cnnlens.explain(model, x, "occlusion", incremental="approximate", report_error=True, drill_down=0.2, **opts)
    exact = cnnlens.explain(model, x, "occlusion", incremental="off", **opts)
    err = a.info["approximate_error"]
    diff = (a.attributions - exact.attributions).abs()
    assert a.info["inference"] == "approximate" and err["exact_inference"] == "incremental"
    assert err["max_abs"] == pytest.approx(float(diff.max()), abs=1e-5) and err["max_abs"] > 0
    assert err["mean_abs"] == pytest.approx(float(diff.mean()), abs=1e-6)
    rho = [
        spearmanr(p.sum(0).flatten(), q.sum(0).flatten()).statistic
        for p, q in zip(a.attributions, exact.attributions, strict=True)
    ]
    assert err["spearman"] == pytest.approx(sum(rho) / 2, abs=1e-6)
    assert all(n < 121 for n in a.info["computed_windows"])  # 11 x 11 windows, not all computed


def test_drill_down_ranks_windows_by_the_range_of_the_coarse_drops_they_interpolate() -> None:
    cy, cx = _coarse(4), _coarse(5)  # 4 x 5 windows: coarse rows 0, 2, 3 and columns 0, 2, 4
    assert (cy, cx) == ([0, 2, 3], [0, 2, 4])
    coarse = torch.tensor([[[1.0, 5.0, 2.0], [0.0, 9.0, 4.0], [3.0, 3.0, 3.0]]], dtype=torch.float64)
    # by hand: window (1, 1) interpolates coarse 1, 5, 0, 9 (range 9); (0, 3) reads 5, 2; (1, 2) reads 5, 9; ...
    want = [[0, 4, 0, 3, 0], [1, 9, 4, 7, 2], [0, 9, 0, 5, 0], [0, 0, 0, 0, 0]]
    got = uncertainty(coarse, cy, cx, 4, 5).view(4, 5)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


def test_approximate_mode_with_every_window_drilled_equals_exact() -> None:
    model = init_(DepthwiseSeparable())
    x = inputs(1, h=20, w=20, seed=11)
    opts = {"window": 4, "stride": 2, "baseline": "zero"}
    a = cnnlens.explain(model, x, "occlusion", incremental="approximate", drill_down=1.0, **opts)
    exact = cnnlens.explain(model, x, "occlusion", incremental="off", **opts)
    assert a.info["inference"] == "approximate" and a.info["computed_windows"] == [81]
    torch.testing.assert_close(a.attributions, exact.attributions, atol=1e-5, rtol=0)


def test_rank_uncertainty_counts_the_windows_within_half_the_range_by_hand() -> None:
    interpolated = torch.tensor([[0.0, 0.1, 0.2, 5.0, 9.0]], dtype=torch.float64)
    spread = torch.tensor([[0.5, 0.0, 0.2, 8.0, 2.0]], dtype=torch.float64)
    # 0.0 +- 0.25 holds 0.0, 0.1, 0.2; no spread: 0; 0.2 +- 0.1 holds 0.1, 0.2; 5 +- 4: 5 and 9; 9 +- 1: 9
    want = torch.tensor([[3.0, 0.0, 2.0, 2.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(rank_uncertainty(interpolated, spread), want)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: (v.clone(), v.stride()) for k, v in model.state_dict().items()},
        "grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": [m.training for m in model.modules()],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for k, (v, stride) in before["state"].items():  # same values and layout (not channels-last, not folded)
        assert torch.equal(after["state"][k][0], v) and after["state"][k][1] == stride, k
    assert {k: after[k] for k in ("grad", "training", "hooks", "inplace")} == {
        k: before[k] for k in ("grad", "training", "hooks", "inplace")
    }


class Padded(nn.Module):
    """Zero padding layers before convolutions (TensorFlow-style "same" padding), some symmetric, one not."""

    def __init__(self) -> None:
        super().__init__()
        self.p1, self.c1, self.b1 = nn.ZeroPad2d(1), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.p2, self.c2, self.b2 = nn.ZeroPad2d(2), nn.Conv2d(8, 8, 5, groups=8), nn.BatchNorm2d(8)
        self.p3, self.c3 = nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, stride=2)
        self.c4, self.fc = nn.Conv2d(8, 6, 3), nn.Linear(6, 3)

    def forward(self, x: T) -> T:
        x = F.relu6(self.b2(self.c2(self.p2(torch.relu(self.b1(self.c1(self.p1(x))))))))
        x = self.c4(F.pad(self.c3(self.p3(x)), (1, 1, 1, 1))).relu()
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("net", [StridedDilated, DepthwiseSeparable, Padded])
def test_folded_batchnorm_and_channels_last_equal_full_inference_and_the_plain_engine(net) -> None:
    model = init_(net())
    if net is StridedDilated:
        model.bn.weight.requires_grad_(False)
    before = snapshot(model)
    x, base = inputs(1, h=21, w=18, seed=12), inputs(1, h=21, w=18, seed=13)
    boxes = windows(21, 18, (5, 4), (3, 3))
    with frozen(model), torch.no_grad():
        inc = Incremental(model)
        inc.clean(x)
    assert inc._alias  # BatchNorms were folded into their convolutions
    if net is Padded:  # the symmetric paddings are left to the convolutions reading them
        assert sorted(p.name for p in inc._skipped) == ["p1", "p2", "pad"]
    got, ref = incremental_logits(model, x, boxes, base)
    plain, _ = incremental_logits(model, x, boxes, base, fold=False, channels_last=False)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, ref, atol=1e-5, rtol=0)
    assert_unchanged(model, before)


def test_the_model_is_untouched_also_when_incremental_inference_raises(monkeypatch) -> None:
    import cnnlens.models._regions as regions

    model = init_(DepthwiseSeparable())  # 1 x 1 convolutions run as matrix products on channels-last maps
    before = snapshot(model)
    x = inputs(1, h=16, w=16, seed=14)

    def boom(*args: object) -> T:
        raise RuntimeError("boom")

    monkeypatch.setattr(regions, "_matmul", boom)
    with pytest.raises(RuntimeError, match="boom"):
        cnnlens.explain(model, x, "occlusion", window=4, stride=2)
    assert_unchanged(model, before)
    monkeypatch.undo()
    e = cnnlens.explain(model, x, "occlusion", window=4, stride=2)
    assert e.info["inference"] == "incremental"
    assert_unchanged(model, before)


def test_lite0_folded_channels_last_engine_equals_full_inference(lite0, one_thread) -> None:
    model = lite0.module
    before = snapshot(model)
    x = lite0.preprocess([sample_image("coffee")])
    boxes = [(0, 16, 0, 16), (208, 224, 208, 224), (100, 116, 50, 66), (0, 16, 200, 224), (96, 128, 96, 128)]
    got, ref = incremental_logits(model, x, boxes, torch.zeros_like(x))
    with frozen(model), torch.no_grad():
        inc = Incremental(model)
        inc.clean(x)
    assert len(inc._alias) == 49  # every convolution of Lite0 has its BatchNorm folded in
    assert (ref - ref[:1]).abs().max() > 1e-2
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert_unchanged(model, before)
