"""randomization_check, class_discrimination and detail: known results, exact cascades and hand-made maps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import cnnlens
import cnnlens.quality as q
from cnnlens.quality._descriptive import effective_resolution, explained_variance
from cnnlens.quality._sanity import cascade, parameterized_layers, spearman
from test_contract import _assert_unchanged, _model, _snapshot

pytestmark = pytest.mark.usefixtures("one_thread")


def sobel(model: object, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """An "explanation" that ignores the model: the edge magnitude of the image."""
    g = x.mean(1, keepdim=True)
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    return (F.conv2d(g, k, padding=1) ** 2 + F.conv2d(g, k.transpose(-1, -2), padding=1) ** 2).sqrt()


class Scrambled(nn.Module):
    """Registration order differs from call order; `spare` is never called; `act` has a parameter (PReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.spare = nn.Linear(2, 2)
        self.bn = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.PReLU(4)
        self.scale = nn.Parameter(torch.tensor(1.0))  # owned by the root, which finishes last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.bn(self.conv2(x)))  # act called twice: counted at its first call
        return self.fc(x.mean((2, 3))) * self.scale


def test_spearman_matches_the_rank_formula_and_constant_conventions() -> None:
    a = torch.arange(10.0)
    perm = torch.tensor([0, 2, 1, 3, 4, 9, 6, 7, 8, 5], dtype=torch.float64)
    d2 = float(((a - perm) ** 2).sum())  # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1))
    assert spearman(a, perm) == pytest.approx(1 - 6 * d2 / (10 * 99), abs=1e-12)
    assert spearman(a, -(a**3)) == pytest.approx(-1.0)  # monotone decreasing
    assert spearman(torch.ones(5), torch.ones(5)) == 1.0  # both constant: unchanged map
    assert spearman(torch.ones(5), torch.arange(5.0)) == 0.0  # one constant: no shared ranking


def test_cascade_groups_top_layers_first_into_at_most_steps_stages() -> None:
    assert cascade(5, 2) == [range(0, 3), range(3, 5)]
    assert cascade(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    assert cascade(3, 10) == [range(0, 1), range(1, 2), range(2, 3)]
    assert cascade(4, 1) == [range(0, 4)]


def test_randomization_cascade_order_and_what_each_stage_has_randomized() -> None:
    torch.manual_seed(0)
    net = Scrambled().eval()
    x = torch.randn(2, 3, 6, 6)
    order = [n for n, _ in parameterized_layers(net, x)]
    assert order == ["conv1", "act", "conv2", "bn", "fc", ""]  # forward order, spare left out
    before = _snapshot(net)
    seen: list[set[str]] = []

    def spy(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # which layers of the model being explained differ from the caller's (untouched) model
        mods = dict(model.named_modules())
        changed = {n for n, m in net.named_modules() if n != "spare" and any(
            not torch.equal(p, q_) for p, q_ in zip(m.parameters(recurse=False), mods[n].parameters(recurse=False),
                                                    strict=True))}  # fmt: skip
        seen.append(changed)
        return inputs.abs() + len(seen)

    s = q.score("randomization_check", net, x, spy, steps=4)
    # 6 layers in 4 stages, top first: [root, fc] [bn, conv2] [act] [conv1]
    assert s.info["layers"] == [["", "fc"], ["bn", "conv2"], ["act"], ["conv1"]]
    assert seen == [set(), {"", "fc"}, {"", "fc", "bn", "conv2"}, {"", "fc", "bn", "conv2", "act"}, set(order)]
    assert s.curve.shape == (2, 4) and s.curve_x.tolist() == [1.0, 2.0, 3.0, 4.0]
    _assert_unchanged(net, before)


def test_randomization_leaves_the_model_untouched_also_in_train_mode_and_on_error() -> None:
    torch.manual_seed(1)
    net = Scrambled().train()
    net.scale.requires_grad_(False)
    x = torch.randn(2, 3, 6, 6)
    before = _snapshot(net)
    s1 = q.score("randomization_check", net, x, "saliency", steps=3)
    _assert_unchanged(net, before)
    s2 = q.score("randomization_check", net, x, "saliency", steps=3)
    assert torch.equal(s1.curve, s2.curve)  # seeded
    calls = []

    def fails_second_time(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise cnnlens.CnnlensError("boom")
        return inputs

    with pytest.raises(cnnlens.CnnlensError, match="boom"):
        q.score("randomization_check", net, x, fails_second_time)
    _assert_unchanged(net, before)
    with pytest.raises(cnnlens.CnnlensError, match="steps"):
        q.score("randomization_check", net, x, "saliency", steps=0)
    net.cache = torch.ones(1, requires_grad=True) * 2  # a non-leaf tensor: the module cannot be deep-copied
    with pytest.raises(cnnlens.CnnlensError, match="deepcopy failed"):
        q.score("randomization_check", net, x, "saliency")
    del net.cache
    _assert_unchanged(net, before)


@pytest.mark.parametrize("late", [1, 3])  # the copy's first forward pass, or an explanation mid-cascade
def test_randomization_failing_inside_the_copy_leaves_the_model_untouched(late: int) -> None:
    model = _model()  # train mode, a frozen bias, BatchNorm statistics, a layer that can be told to fail
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    before = _snapshot(model)
    q.score("randomization_check", model, x, "saliency", steps=3)
    n_original = model.boom.calls  # forward passes the caller's model ran (the copy counts its own)
    model.boom.calls, model.boom.fail_at = 0, n_original + late  # the copy inherits the counter and fails
    with pytest.raises(RuntimeError, match="boom") as err:
        q.score("randomization_check", model, x, "saliency", steps=3)
    frames = {f.name for f in err.traceback}
    assert "compute" in frames and "attributions" not in frames  # in the cascade, not the first explanation
    assert ("parameterized_layers" in frames) == (late == 1)
    assert model.boom.calls == n_original  # the failing passes ran on the copy
    model.boom.calls, model.boom.fail_at = 0, 0
    _assert_unchanged(model, before)


def test_randomization_check_known_result_on_lite0(lite0: cnnlens.Classifier, x: torch.Tensor) -> None:
    """Adebayo et al.: an edge detector survives randomization; the gradient of a trained model does not."""
    before = _snapshot(lite0.module)
    edges = q.score("randomization_check", lite0, x, sobel)
    grads = q.score("randomization_check", lite0, x, "saliency")
    assert edges.curve.min() > 0.99 and edges.mean > 0.99
    assert grads.mean < 0.5 and edges.mean - grads.mean > 0.5
    assert grads.curve[0, -1] < grads.curve[0, 0]  # more randomized layers, less left of the original map
    assert sum(map(len, grads.info["layers"])) == len(parameterized_layers(lite0.module, x))
    _assert_unchanged(lite0.module, before)


class FixedLogits(nn.Module):
    """Logits that do not depend on the input: class order 2 > 0 > 3 > 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.register_buffer("bias", torch.tensor([2.0, 0.0, 5.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0 * self.conv(x).mean((1, 2, 3))[:, None] + self.bias


def test_class_discrimination_on_hand_made_maps() -> None:
    a = torch.arange(16.0).reshape(4, 4)
    table = {2: a, 0: a.flip(1), 3: a.T, 1: torch.ones(4, 4)}
    asked = []

    def per_class(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        asked.append(target.tolist())
        return torch.stack([table[int(t)] for t in target])[:, None] - 7.5  # signed maps, centred on 0

    net, x = FixedLogits(), torch.randn(2, 3, 4, 4)
    s = q.score("class_discrimination", net, x, per_class, absolute=False)
    assert asked == [[2, 2], [0, 0]] and s.info["other_classes"] == [0, 0]
    expected = stats.spearmanr(a.reshape(-1), a.flip(1).reshape(-1)).statistic
    assert s.values.tolist() == pytest.approx([expected] * 2, abs=1e-12)
    s = q.score("class_discrimination", net, x, per_class, target=[0, 3])  # the best class other than the target
    assert s.info["other_classes"] == [2, 2]
    assert s.values[1] == pytest.approx(stats.spearmanr((a.T - 7.5).abs().reshape(-1), (a - 7.5).abs().reshape(-1))
                                        .statistic, abs=1e-12)  # fmt: skip


def test_grad_cam_is_class_discriminative_guided_backprop_is_not(lite0: cnnlens.Classifier, x: torch.Tensor) -> None:
    """Selvaraju et al.: guided backprop's maps hardly change with the class; Grad-CAM's do."""
    cam = q.score("class_discrimination", lite0, x, "grad_cam")
    gbp = q.score("class_discrimination", lite0, x, "guided_backprop")
    assert cam.info["classes"] == gbp.info["classes"] and cam.info["other_classes"] == gbp.info["other_classes"]
    assert cam.info["classes"] != cam.info["other_classes"]
    assert gbp.mean > 0.99
    assert cam.mean < 0.97 and (1 - cam.mean) > 20 * (1 - gbp.mean)


def blocks(k: int, size: int, n: int = 3, seed: int = 0) -> torch.Tensor:
    v = torch.randn(n, k, k, generator=torch.Generator().manual_seed(seed))
    return v.repeat_interleave(size // k, 1).repeat_interleave(size // k, 2)


@pytest.mark.parametrize("k", [1, 2, 4, 7, 8, 14, 28, 56])
def test_detail_of_block_maps_is_the_number_of_blocks(k: int) -> None:
    assert effective_resolution(blocks(k, 56), 0.95).tolist() == [k] * 3


def test_detail_of_pixel_noise_is_the_full_resolution_and_of_a_constant_one_cell() -> None:
    g = torch.Generator().manual_seed(3)
    assert effective_resolution(torch.randn(2, 48, 48, generator=g)).tolist() == [48.0, 48.0]
    assert effective_resolution(torch.randn(1, 30, 40, generator=g)).tolist() == [pytest.approx(math.sqrt(1200))]
    assert effective_resolution(torch.full((1, 8, 8), 3.0)).tolist() == [1.0]
    assert effective_resolution(blocks(7, 224, n=1)).tolist() == [7.0]  # a Grad-CAM grid on a 224 image


def test_explained_variance_of_a_ramp_matches_the_formula() -> None:
    h = 60
    ramp = torch.arange(h, dtype=torch.float64).expand(1, 5, h)  # varies along the width only
    for s in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60):  # within-cell variance (s^2 - 1) / 12 of (h^2 - 1) / 12
        assert explained_variance(ramp, s).item() == pytest.approx(1 - (s * s - 1) / (h * h - 1), abs=1e-12)


def test_detail_metric_on_a_callable_and_on_lite0(lite0: cnnlens.Classifier, x: torch.Tensor) -> None:
    net = FixedLogits()
    xs = torch.randn(3, 3, 28, 28)
    s = q.score("detail", net, xs, lambda m, inputs, t: blocks(4, 28)[:, None], absolute=False)
    assert s.values.tolist() == [4.0] * 3 and s.higher_is_better is None
    assert q.score("detail", net, xs, lambda m, inputs, t: blocks(28, 28)[:, None], absolute=False).mean == 28.0
    with pytest.raises(cnnlens.CnnlensError, match="fraction"):
        q.score("detail", net, xs, "saliency", fraction=1.5)
    grads = q.score("detail", lite0, x, "saliency").mean
    cam = q.score("detail", lite0, x, "grad_cam").mean
    assert grads == 224.0 and 7.0 <= cam < 30.0  # Lite0's last feature map is 7 x 7
