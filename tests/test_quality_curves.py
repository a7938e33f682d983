"""deletion, insertion and ROAD curves computed by hand (numpy, dense solver) on a model whose logit is the sum
of a region's pixels; ROAD's imputation on hand-checkable images; the pointing game on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnlens
from cnnlens import CnnlensError
from cnnlens.attribution import Explanation
from cnnlens.quality import score
from cnnlens.quality._curves import linear_imputation, noisy_linear_imputation

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor
C, H, W = 2, 5, 5


class RegionSum(nn.Module):
    """Logit 0 = sum of the pixels (all channels) inside a fixed region, logit 1 = 0."""

    def __init__(self, region: T) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: T) -> T:
        z = (x * self.region).flatten(1).sum(1)
        return torch.stack([z, torch.zeros_like(z)], 1)


def _setup() -> tuple[RegionSum, T, T, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    region = torch.zeros(H, W)
    region[1:4, 0:3] = 1
    x = torch.rand(2, C, H, W, generator=g) + 0.5
    attr = torch.randint(-3, 4, (2, C, H, W), generator=g).float()  # many ties in the channel sums
    return RegionSum(region), x, attr, region.numpy()


def _fixed(attr: T):
    return lambda model, inputs, target: attr


def _by_hand(x: T, attr: T, region: np.ndarray, steps: int, base: float, insert: bool, absolute: bool = False):
    xn, an = x.numpy().astype(np.float64), attr.numpy().sum(1).reshape(len(x), -1)
    n = H * W
    counts = [k * n // steps for k in range(steps + 1)]
    curves = []
    for i in range(len(x)):
        key = np.abs(an[i]) if absolute else an[i]
        order = np.argsort(-key, kind="stable")
        row = []
        for c in counts:
            changed = np.zeros(n, bool)
            changed[order[:c]] = True
            changed = changed.reshape(H, W)
            img = np.where(changed, xn[i], base) if insert else np.where(changed, base, xn[i])
            row.append((img * region).sum())
        curves.append(row)
    xs = np.array(counts) / n
    curves = np.array(curves)
    return curves, xs, np.trapezoid(curves, xs, axis=1)


@pytest.mark.parametrize("steps", [5, 4, 25])  # 4 does not divide the 25 pixels: 0, 6, 12, 18, 25 removed
@pytest.mark.parametrize("name", ["deletion", "insertion"])
def test_curves_by_hand(name: str, steps: int) -> None:
    model, x, attr, region = _setup()
    insert = name == "insertion"
    s = score(name, model, x, _fixed(attr), target=0, steps=steps, baseline=0.25, output="logit")
    curves, xs, auc = _by_hand(x, attr, region, steps, 0.25, insert)
    np.testing.assert_allclose(s.curve.numpy(), curves, rtol=1e-6)
    np.testing.assert_allclose(s.curve_x.numpy(), xs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.values.numpy(), auc, rtol=1e-6)
    assert s.curve.shape == (2, steps + 1) and s.higher_is_better is insert
    assert s.passes == 2 + 2 * (steps + 1)


def test_curves_absolute_sign_explanation_and_probability() -> None:
    model, x, attr, region = _setup()
    s = score("deletion", model, x, _fixed(attr), target=0, steps=5, baseline=0.0, sign="absolute", output="logit")
    curves, _, auc = _by_hand(x, attr, region, 5, 0.0, False, absolute=True)
    np.testing.assert_allclose(s.curve.numpy(), curves, rtol=1e-6)
    np.testing.assert_allclose(s.values.numpy(), auc, rtol=1e-6)
    # an Explanation of the same inputs gives the same numbers as a callable
    e = Explanation(attr, "fixed", torch.tensor([0, 0]), torch.zeros(2, 2), 0)
    same = score("deletion", model, x, e, target=0, steps=5, baseline=0.0, sign="absolute", output="logit")
    assert torch.equal(same.values, s.values)
    # probability: softmax over (z, 0) is sigmoid(z)
    p = score("insertion", model, x, _fixed(attr), target=0, steps=5, baseline=0.0)
    curves, xs, _ = _by_hand(x, attr, region, 5, 0.0, True)
    prob = 1 / (1 + np.exp(-curves))
    np.testing.assert_allclose(p.curve.numpy(), prob, rtol=1e-6)
    np.testing.assert_allclose(p.values.numpy(), np.trapezoid(prob, xs, axis=1), rtol=1e-6)


def test_curve_baselines_and_errors() -> None:
    model, x, attr, _ = _setup()
    # default deletion baseline on a bare module: 0 (no normalization known), so the last point is f(0) = 0
    s = score("deletion", model, x, _fixed(attr), target=0, steps=5, output="logit")
    assert torch.equal(s.curve[:, -1], torch.zeros(2, dtype=torch.float64))
    # insertion starts from the blurred image and ends at the image
    ins = score("insertion", model, x, _fixed(attr), target=0, steps=5, output="logit")
    torch.testing.assert_close(ins.curve[:, -1], model(x)[:, 0].double())
    with pytest.raises(CnnlensError, match="steps"):
        score("deletion", model, x, _fixed(attr), steps=26)
    with pytest.raises(CnnlensError, match="sign"):
        score("deletion", model, x, _fixed(attr), sign="negative")
    with pytest.raises(CnnlensError, match="output"):
        score("insertion", model, x, _fixed(attr), output="softmax")
    with pytest.raises(CnnlensError, match="normalization"):
        score("deletion", model, x, _fixed(attr), baseline="black")
    with pytest.raises(CnnlensError, match="NaN"):
        score("deletion", model, x, _fixed(attr * torch.nan))


# ---- ROAD ----------------------------------------------------------------------------------------------------
def _dense_imputation(img: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Independent reference: every missing pixel = weighted mean of its in-image neighbours, solved densely."""
    h, w = missing.shape
    idx = {p: k for k, p in enumerate(zip(*np.nonzero(missing), strict=True))}
    a = np.zeros((len(idx), len(idx)))
    b = np.zeros((len(idx), img.shape[0]))
    for (r, c), k in idx.items():
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr, dc) == (0, 0) or not (0 <= rr < h and 0 <= cc < w):
                    continue
                wt = 1 / 12 if dr and dc else 1 / 6
                a[k, k] += wt
                if missing[rr, cc]:
                    a[k, idx[(rr, cc)]] -= wt
                else:
                    b[k] += wt * img[:, rr, cc]
    out = img.copy()
    sol = np.linalg.solve(a, b)
    for (r, c), k in idx.items():
        out[:, r, c] = sol[k]
    return out


def test_imputation_recovers_a_ramp_and_single_pixels() -> None:
    yy, xx = torch.meshgrid(torch.arange(7.0), torch.arange(9.0), indexing="ij")
    ramp = torch.stack([2 * xx + 3 * yy + 1, xx - 0.5 * yy]).double()
    hole = torch.zeros(7, 9, dtype=torch.bool)
    hole[1:6, 2:8] = True  # interior pixels: a linear function is its own weighted neighbour mean
    torch.testing.assert_close(linear_imputation(ramp, hole), ramp, rtol=0, atol=1e-10)
    img = torch.randn(1, 7, 9, generator=torch.Generator().manual_seed(3)).double()
    one = torch.zeros(7, 9, dtype=torch.bool)
    one[3, 4] = one[0, 0] = True  # two isolated pixels: an interior one and a corner
    out = linear_imputation(img, one)[0]
    nb = img[0, 2:5, 3:6]
    interior = (nb[0, 1] + nb[2, 1] + nb[1, 0] + nb[1, 2]) / 6 + (nb[0, 0] + nb[0, 2] + nb[2, 0] + nb[2, 2]) / 12
    torch.testing.assert_close(out[3, 4], interior)
    corner = (img[0, 0, 1] / 6 + img[0, 1, 0] / 6 + img[0, 1, 1] / 12) / (1 / 6 + 1 / 6 + 1 / 12)
    torch.testing.assert_close(out[0, 0], corner)
    assert torch.equal(out[~one], img[0][~one])
    # a large irregular hole against the dense reference
    big = torch.rand(7, 9, generator=torch.Generator().manual_seed(5)) < 0.7
    ref = _dense_imputation(img.numpy(), big.numpy())
    np.testing.assert_allclose(linear_imputation(img, big).numpy(), ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(CnnlensError, match="known pixel"):
        linear_imputation(img, torch.ones(7, 9, dtype=torch.bool))


def test_imputation_equals_the_dense_reference_on_larger_grids_with_separators() -> None:
    """Grids past the nested-dissection leaf (separators split them, recursively), every fraction, scattered and
    blob-shaped holes, holes on the borders, one channel and three: the sparse solve equals the dense one."""
    g = torch.Generator().manual_seed(11)
    for h, w, c in [(23, 31, 3), (40, 17, 1)]:
        img = torch.randn(c, h, w, generator=g).double()
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        smooth = torch.sin(yy / 4.0) + torch.cos(xx / 5.0)  # a smooth map: contiguous holes
        for relevance in (torch.rand(h, w, generator=g), smooth):
            order = relevance.flatten().argsort(descending=True).argsort().view(h, w)
            for fraction in (0.1, 0.5, 0.9, 0.98):
                miss = order < int(fraction * h * w)
                got = linear_imputation(img, miss).numpy()
                np.testing.assert_allclose(got, _dense_imputation(img.numpy(), miss.numpy()), rtol=1e-9, atol=1e-11)
                single = linear_imputation(img.float(), miss)  # solved in float32: within its rounding
                assert single.dtype == torch.float32
                np.testing.assert_allclose(single.double().numpy(), got, rtol=0, atol=2e-5 * np.abs(got).max())


def test_noisy_imputation_adds_seeded_noise_on_removed_pixels_only() -> None:
    img = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(1))
    miss = torch.rand(6, 6, generator=torch.Generator().manual_seed(2)) < 0.4
    clean = linear_imputation(img, miss)
    a = noisy_linear_imputation(img, miss, 0.5, torch.Generator().manual_seed(9))
    b = noisy_linear_imputation(img, miss, 0.5, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.equal(a[:, ~miss], img[:, ~miss])
    d = (a - clean)[:, miss]
    assert (d != 0).all() and 0.2 < float(d.std()) < 1.0


def test_road_curves_by_hand() -> None:
    model, x, attr, region = _setup()
    steps = 4
    s = score("road", model, x, _fixed(attr), target=0, steps=steps, noise=0.0, output="logit")
    n = H * W
    counts = [k * n // steps for k in range(steps)]
    xs = np.array(counts) / n
    for i in range(2):
        key = attr[i].sum(0).flatten().numpy()
        for name, order in (("morf", np.argsort(-key, kind="stable")), ("lerf", np.argsort(key, kind="stable"))):
            expected = []
            for c in counts:
                missing = np.zeros(n, bool)
                missing[order[:c]] = True
                img = _dense_imputation(x[i].double().numpy(), missing.reshape(H, W))
                expected.append((img * region).sum())
            np.testing.assert_allclose(s.info[name][i].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(s.curve_x.numpy(), xs)
    auc = np.trapezoid(s.info["lerf"].numpy(), xs, axis=1) - np.trapezoid(s.info["morf"].numpy(), xs, axis=1)
    np.testing.assert_allclose(s.values.numpy(), auc, rtol=1e-9)
    assert torch.equal(s.curve, s.info["morf"])
    assert s.passes == 2 + 2 * 2 * steps


def test_road_is_seeded() -> None:
    model, x, attr, _ = _setup()
    a = score("road", model, x, _fixed(attr), target=0, steps=3, output="logit", seed=1)
    b = score("road", model, x, _fixed(attr), target=0, steps=3, output="logit", seed=1, batch_size=5)  # other chunking
    c = score("road", model, x, _fixed(attr), target=0, steps=3, output="logit", seed=2)
    assert torch.equal(a.values, b.values) and not torch.equal(a.values, c.values)
    with pytest.raises(CnnlensError, match="steps"):
        score("road", model, x, _fixed(attr), steps=1)
    with pytest.raises(CnnlensError, match="noise"):
        score("road", model, x, _fixed(attr), noise=-1)


# ---- pointing game --------------------------------------------------------------------------------------------
def _peaks(points: list[tuple[int, int]], h: int = 48, w: int = 48) -> T:
    maps = torch.zeros(len(points), 1, h, w)
    for i, (r, c) in enumerate(points):
        maps[i, 0, r, c] = 1.0
    return maps


def test_pointing_game_on_handmade_maps() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 48 * 48, 4))
    x = torch.zeros(3, 3, 48, 48)
    maps = _peaks([(10, 10), (10, 40), (40, 40)])
    boxes = [(5, 5, 20, 20), (5, 5, 20, 20), [(0, 0, 1, 1), (30, 30, 45, 45)]]  # (x0, y0, x1, y1)
    s = score("pointing_game", model, x, _fixed(maps), boxes=boxes)
    # image 1: the peak at column 40 is 20 pixels right of the box: a miss with tolerance 15
    assert s.values.tolist() == [1.0, 0.0, 1.0]
    assert s.info["points"].tolist() == [[10, 10], [10, 40], [40, 40]]
    assert score("pointing_game", model, x, _fixed(maps), boxes=boxes, tolerance=20).values.tolist() == [1, 1, 1]
    assert score("pointing_game", model, x, _fixed(maps), boxes=boxes, tolerance=19.9).values[1] == 0
    # diagonal distance: box corner (20, 20) to the peak (31, 31) is sqrt(242) ~ 15.6
    diag = _peaks([(31, 31)])
    assert score("pointing_game", model, x[:1], _fixed(diag), boxes=[(5, 5, 20, 20)]).values.tolist() == [0.0]
    assert score("pointing_game", model, x[:1], _fixed(diag), boxes=[(5, 5, 20, 20)], tolerance=16).values[0] == 1
    masks = torch.zeros(3, 48, 48, dtype=torch.bool)
    masks[0, 10, 10] = masks[1, 0, 0] = masks[2, 40, 26] = True  # image 2: 14 pixels left of the peak
    assert score("pointing_game", model, x, _fixed(maps), masks=masks).values.tolist() == [1.0, 0.0, 1.0]
    assert score("pointing_game", model, x, _fixed(maps), masks=masks, tolerance=0).values.tolist() == [1, 0, 0]
    # ties: the first maximum in raster order; channels are summed first
    tie = torch.zeros(1, 3, 48, 48)
    tie[0, :, 2, 2] = 1.0
    tie[0, 0, 30, 30] = 2.0  # 2 < 3 = channel sum at (2, 2)
    tie[0, :, 45, 45] = 1.0  # ties with (2, 2), later in raster order
    m = torch.zeros(1, 48, 48, dtype=torch.bool)
    m[0, 0:4, 0:4] = True
    assert score("pointing_game", model, x[:1], _fixed(tie), masks=m, tolerance=0).values.tolist() == [1.0]


def test_pointing_game_errors() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 48 * 48, 4))
    x, maps = torch.zeros(2, 3, 48, 48), _peaks([(1, 1), (2, 2)])
    with pytest.raises(CnnlensError, match="boxes= .* masks="):
        score("pointing_game", model, x, _fixed(maps))
    with pytest.raises(CnnlensError, match="not both"):
        score("pointing_game", model, x, _fixed(maps), boxes=[(0, 0, 1, 1)] * 2, masks=torch.ones(2, 48, 48) > 0)
    with pytest.raises(CnnlensError, match="one entry per image"):
        score("pointing_game", model, x, _fixed(maps), boxes=[(0, 0, 1, 1)])
    with pytest.raises(CnnlensError, match=r"\(B, H, W\)"):
        score("pointing_game", model, x, _fixed(maps), masks=torch.ones(2, 40, 48) > 0)
    with pytest.raises(CnnlensError, match="bool"):
        score("pointing_game", model, x, _fixed(maps), masks=torch.ones(2, 48, 48))
    with pytest.raises(CnnlensError, match="x0, y0, x1, y1"):
        score("pointing_game", model, x, _fixed(maps), boxes=[(0, 0, 1), (0, 0, 1, 1)])
    with pytest.raises(CnnlensError, match="non-empty"):
        score("pointing_game", model, x, _fixed(maps), masks=torch.zeros(2, 48, 48, dtype=torch.bool))
    with pytest.raises(CnnlensError, match="x0, y0, x1, y1"):
        score("pointing_game", model, x, _fixed(maps), boxes=[(0, 0, 1, "a"), 3])
    with pytest.raises(CnnlensError, match="x1 < x0"):
        score("pointing_game", model, x, _fixed(maps), boxes=[(5, 0, 1, 1), (0, 0, 1, 1)])
    # boxes as a (B, 4) tensor
    ok = score("pointing_game", model, x, _fixed(maps), boxes=torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]]), tolerance=0)
    assert ok.values.tolist() == [1.0, 0.0]


def test_pointing_game_with_a_real_method() -> None:
    """A model that only looks at one corner: input x gradient's maximum lies in that corner."""
    region = torch.zeros(16, 16)
    region[:6, :6] = 1
    model = RegionSum(region)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    e = cnnlens.explain(model, x, "input_x_gradient", target=0)
    s = score("pointing_game", model, x, e, target=0, boxes=[(0, 0, 5, 5)] * 2, tolerance=0)
    assert s.values.tolist() == [1.0, 1.0]


def test_lite0_grad_cam_beats_its_reverse_and_a_random_map(lite0: cnnlens.Classifier, x: T, target: int) -> None:
    """Truth test on a real photo: Grad-CAM's ranking is more faithful than its own reverse and than noise
    (except for deletion against noise: scattered black pixels destroy the score fastest, a known artefact)."""
    e = cnnlens.explain(lite0, x, "grad_cam", target=target)
    rnd = torch.rand(1, 1, 224, 224, generator=torch.Generator().manual_seed(0))

    def run(name: str, attr: T, **opts) -> float:
        return score(name, lite0, x, _fixed(attr), target=target, **opts).mean

    good = score("deletion", lite0, x, e, target=target, steps=8)  # default baseline: black pixels
    assert good.curve[0, 0] > 0.3 and good.curve[0, -1] < 0.05
    # logits separate better than the saturated probability: removing the map's top pixels first hurts sooner
    logit = score("deletion", lite0, x, e, target=target, steps=8, output="logit").mean
    assert logit < run("deletion", -e.attributions, steps=8, output="logit") - 1.0
    assert run("insertion", e.attributions, steps=8) > run("insertion", rnd, steps=8) + 0.05
    road = score("road", lite0, x, e, target=target, steps=4)
    assert road.mean > 0.05 and road.mean > run("road", rnd, steps=4) + 0.05
    assert (road.info["morf"][0, 1:3] < road.info["lerf"][0, 1:3] - 0.1).all()  # 25% and 50% removed
