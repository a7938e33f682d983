"""Concepts: the Sobol estimator against the Ishigami function, NMF properties, planted concepts recovered by a
CNN trained on them, TCAV on a toy with a known direction, the guard, determinism and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cnnlens.concepts as concepts
from _planted import PATTERN, planted, planted_cnn
from cnnlens import CnnlensError
from cnnlens.concepts._factor import factorize

ISHIGAMI_TOTAL = {  # a = 7, b = 0.1: closed form (Ishigami and Homma 1990)
    "a": 7.0,
    "b": 0.1,
}


def _ishigami_truth(a: float, b: float) -> np.ndarray:
    pi = np.pi
    v1 = 0.5 * (1 + b * pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * pi**8 * (1 / 18 - 1 / 50)
    var = v1 + v2 + v13
    return np.array([(v1 + v13) / var, v2 / var, v13 / var])


def test_sobol_total_recovers_ishigami_at_default_design_size():
    a, b = ISHIGAMI_TOTAL["a"], ISHIGAMI_TOTAL["b"]
    truth = _ishigami_truth(a, b)
    np.testing.assert_allclose(truth, [0.558, 0.442, 0.244], atol=1e-3)

    def f(u: np.ndarray) -> np.ndarray:
        x = -np.pi + 2 * np.pi * u
        return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])

    for seed in range(3):
        assert np.abs(concepts.sobol_total(f, 3, seed=seed) - truth).max() < 0.02


def test_sobol_total_of_additive_function_and_errors():
    # f = 2 x0 + x1 (x uniform): variances 4/12 and 1/12, no interaction -> total indices 0.8 and 0.2, x2 none
    st = concepts.sobol_total(lambda u: np.stack([2 * u[:, 0] + u[:, 1], u[:, 2]], 1), 3)
    np.testing.assert_allclose(st[0], [0.8, 0.2, 0.0], atol=0.01)
    np.testing.assert_allclose(st[1], [0.0, 0.0, 1.0], atol=0.01)
    with pytest.raises(CnnlensError, match="power of 2"):
        concepts.sobol_total(lambda u: u[:, 0], 2, designs=100)


def test_factorization_non_negative_and_error_non_increasing():
    rng = np.random.default_rng(0)
    data = (rng.gamma(1.0, size=(400, 5)) @ rng.gamma(1.0, size=(5, 12))).astype(np.float32)  # rank 5, >= 0
    errors = []
    for k in range(1, 7):
        fact = factorize(data, k, seed=0)
        u = fact.nmf.transform(data) * fact.norms
        assert (fact.directions >= 0).all() and (u >= 0).all()
        errors.append(np.linalg.norm(data - u @ fact.directions) / np.linalg.norm(data))
    assert all(b <= a + 1e-6 for a, b in zip(errors[:-1], errors[1:], strict=True))
    assert errors[4] < 0.01 < errors[0]  # five concepts rebuild rank-5 data


class _AvgNet(nn.Module):
    """conv-ReLU (8 channels) -> mean -> linear: the class score is linear in the concept layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_fidelity_near_one_with_enough_concepts_and_model_untouched():
    model = _AvgNet()
    x = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    few = concepts.extract(model, x, 1, n_concepts=1, designs=16, crops_per_scale=1, progress=False)
    full = concepts.extract(model, x, 1, n_concepts=8, designs=16, crops_per_scale=1, progress=False)
    assert full.layer == "act" and not full.rectified
    assert full.fidelity > 0.99 and full.agreement == 1.0 and full.fidelity > few.fidelity
    assert full.reconstruction_error < few.reconstruction_error
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    again = concepts.extract(model, x, 1, n_concepts=8, designs=16, crops_per_scale=1, progress=False)
    np.testing.assert_array_equal(again.importance, full.importance)
    np.testing.assert_array_equal(again.directions, full.directions)


# ---- planted concepts ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted_concepts():
    model = planted_cnn()
    x, has, boxes = planted(60, seed=3, cross=True, ring=True)
    found = concepts.extract(
        model, x, 1, n_concepts=3, designs=128, importance_images=16, crops_per_scale=1, progress=False
    )
    return model, x, boxes, found


def _hits(found, boxes) -> np.ndarray:
    """``(k, 2)`` share of images whose concept map maximum lies on the cross / the ring (box + 1 pixel)."""
    hits = np.zeros((found.n_concepts, 2))
    for i in range(len(boxes)):
        maps = found.maps(i)
        for j in range(found.n_concepts):
            y, x = np.unravel_index(maps[j].argmax(), maps[j].shape)
            for p in range(2):
                top, left = boxes[i, p]
                hits[j, p] += top - 1 <= y <= top + PATTERN and left - 1 <= x <= left + PATTERN
    return hits / len(boxes)


def test_planted_patterns_are_separate_localized_concepts_ranked_by_dependence(planted_concepts):
    model, x, boxes, found = planted_concepts
    assert found.layer == "act"
    hits = _hits(found, boxes)
    cross, ring = int(hits[:, 0].argmax()), int(hits[:, 1].argmax())
    assert cross != ring
    assert hits[cross, 0] >= 0.9 and hits[ring, 1] >= 0.9
    # class 1's logit is 2 z_cross + z_ring: the cross concept must rank above the ring concept
    assert found.importance[cross] > found.importance[ring]


def test_deleting_concepts_by_importance_lowers_score_faster_than_random(planted_concepts):
    _, _, _, found = planted_concepts
    by_importance = found.deletion_curve()
    rng = np.random.default_rng(0)
    random = np.mean([found.deletion_curve(rng.permutation(found.n_concepts)) for _ in range(6)], axis=0)
    assert by_importance[0] == pytest.approx(random[0]) and by_importance[-1] == pytest.approx(random[-1])
    assert by_importance[1:-1].mean() < random[1:-1].mean()


def test_one_image_in_concepts_finds_the_pattern_it_holds(planted_concepts):
    model, _, _, found = planted_concepts
    hits = _hits(found, planted(60, seed=3, cross=True, ring=True)[2])
    cross = int(hits[:, 0].argmax())
    only_ring, _, _ = planted(1, seed=11, cross=False, ring=True)
    both, _, _ = planted(1, seed=11, cross=True, ring=True)
    a, b = concepts.explain_image(found, only_ring[0]), concepts.explain_image(found, both[0])
    assert a.presence[cross] < 0.7 * b.presence[cross] and cross in b.present
    assert b.contributions[cross] == b.contributions.max() > a.contributions[cross]
    assert a.score < b.score
    assert a.maps.shape == (found.n_concepts, 32, 32)


# ---- TCAV ---------------------------------------------------------------------------------------------------------
class _DirectionNet(nn.Module):
    """Layer ``lift`` (an orthogonal 1x1 conv); class-1 score: mean tanh(v . a) plus a quadratic term in
    directions orthogonal to v (so gradients vary from image to image, as in real models)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lift = nn.Conv2d(8, 8, 1, bias=False)
        q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
        self.lift.weight.data.copy_(q[:, :, None, None])
        v = nn.functional.normalize(torch.randn(8, generator=g), dim=0)
        u = torch.randn(8, 8, generator=g)
        self.register_buffer("v", v)
        self.register_buffer("u", u - (u @ v)[:, None] * v[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lift(x)
        s = torch.tanh(torch.einsum("c,nchw->nhw", self.v, a)).mean((1, 2))
        s = s + 3.0 * (torch.einsum("jc,nchw->njhw", self.u, a) ** 2).mean((1, 2, 3))
        return torch.stack([-s, s], 1)


def test_tcav_finds_the_direction_and_random_sets_are_not_significant():
    model = _DirectionNet()
    g = torch.Generator().manual_seed(1)
    noise = lambda n: torch.randn(n, 8, 4, 4, generator=g)  # noqa: E731
    shift = model.lift.weight[:, :, 0, 0].T @ model.v  # the input whose layer output is v
    concept, pool, data = noise(50) + 2 * shift[None, :, None, None], noise(600), noise(100)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    result = concepts.tcav(model, concept, pool, 1, data, layer="lift", progress=False)
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    truth = model.v[:, None, None].expand(8, 4, 4).reshape(-1).numpy()
    assert (result.cavs @ (truth / np.linalg.norm(truth)) >= 0.9).all()
    assert result.significant and result.score > 0.75 and "significant" in str(result)
    verdicts = [
        concepts.tcav(model, noise(50), pool, 1, data, layer="lift", seed=s, progress=False).significant
        for s in range(6)
    ]
    assert not any(verdicts)


# ---- errors -------------------------------------------------------------------------------------------------------
class _Mean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(-1)


def test_errors_name_the_problem_and_the_fix():
    model = _AvgNet()
    x = torch.randn(6, 3, 8, 8)
    with pytest.raises(CnnlensError, match="at least 2 images"):
        concepts.extract(model, x[:1], 0, n_concepts=2, progress=False)
    with pytest.raises(CnnlensError, match="has 8 channels"):
        concepts.extract(model, x, 0, n_concepts=9, progress=False)
    # conv's negative outputs go through a ReLU: the model ignores them, so conv is used rectified
    assert concepts.extract(model, x, 0, layer="conv", n_concepts=2, designs=16, progress=False).rectified
    deeper = nn.Sequential(model.conv, model.act, nn.Conv2d(8, 4, 1), nn.Flatten(2), _Mean(), nn.Linear(4, 2))
    with pytest.raises(CnnlensError, match="negative outputs.*pass layer= a layer such as 1 "):
        concepts.extract(deeper, x, 0, layer="2", progress=False)
    found = concepts.extract(deeper, x, 0, layer="1", n_concepts=2, designs=16, progress=False)  # the fix works
    assert found.layer == "1" and concepts.extract(deeper, x, 0, n_concepts=2, designs=16, progress=False).layer == "1"
    from cnnlens.data import ArrayImages

    data = ArrayImages(np.zeros((4, 8, 8), np.uint8), [0, 0, 1, 1], ["a", "b", "c"])
    with pytest.raises(CnnlensError, match="no images of class 2"):
        concepts.extract(model, data, "c", progress=False)
    with pytest.raises(CnnlensError, match="unknown class"):
        concepts.extract(model, data, "zebra", progress=False)
