"""One contract over the whole registry: shapes, devices, the model left exactly as it was, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_globals

import cnnlens
from cnnlens.attribution import methods

C, H, W = 3, 12, 12


class _Boom(nn.Module):
    """Raises on the n-th call (0 = never): a method failing midway."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at and self.calls >= self.fail_at:
            raise RuntimeError("boom: failure inside the model")
        return x


class ContractNet(nn.Module):
    """BatchNorm, in-place ReLU, a reused ReLU, functional ReLU6, residual add, max pooling, GAP, dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(C, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.boom = _Boom()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn1(self.conv1(x)))
        h = self.act(self.bn2(self.conv2(h)) + h)
        h = F.relu6(self.pool(self.boom(h)))
        return self.fc(self.drop(self.gap(h).flatten(1)))


def _model() -> ContractNet:
    torch.manual_seed(0)
    m = ContractNet()
    for bn in (m.bn1, m.bn2):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
    m.train()  # left in train mode by its owner: must be explained as in eval mode and stay in train mode
    m.conv2.bias.requires_grad_(False)
    return m


def _options(name: str) -> dict:
    info = {m.name: m for m in methods()}[name]
    opts: dict = {}
    if "steps" in info.params:
        opts["steps"] = 4
    if "samples" in info.params:
        opts["samples"] = 3
    if info.needs_baseline == "distribution":
        opts["baseline"] = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(1)) * 0.1
    if name == "gradient_shap":
        opts["stdev"] = 0.05
    if "mask" in info.params:
        opts["mask"] = "grid:4"  # 9 segments: superpixels of a 12x12 image are single pixels (slow)
    return opts


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "hooks": [
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
            for m in model.modules()
        ],
        "global_hooks": len(module_globals._global_forward_hooks) + len(module_globals._global_backward_hooks),
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
    }


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    for key in before["state"]:
        assert torch.equal(before["state"][key], after["state"][key]), f"{key} changed"
    for key in ("training", "requires_grad", "hooks", "global_hooks", "inplace"):
        assert before[key] == after[key], f"{key} changed"
    assert all(g is None for g in after["grads"]), "parameter .grad was written"


NAMES = [m.name for m in methods()]


def test_registry_lists_every_gradient_method_once() -> None:
    expected = {
        "saliency",
        "input_x_gradient",
        "guided_backprop",
        "deconvnet",
        "integrated_gradients",
        "gradient_shap",
        "deeplift",
        "deeplift_shap",
    }
    assert expected <= set(NAMES)
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str) -> None:
    model = _model()
    x = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model.eval()
        expected_probs = torch.softmax(model(x), 1)
        model.train()
    before = _snapshot(model)
    info = {m.name: m for m in methods()}[name]

    e = cnnlens.explain(model, x, name, batch_size=3, seed=7, **_options(name))

    _assert_unchanged(model, before)
    if info.output == "layer":  # shaped like the layer's output: by default the last convolution, 6 x 12 x 12
        assert e.attributions.shape == (2, 6, H, W)
    else:
        assert e.attributions.shape == (2, C if info.output == "input" else 1, H, W)
    assert e.attributions.dtype == x.dtype and e.attributions.device == x.device
    assert torch.isfinite(e.attributions).all()
    assert e.attributions.abs().sum() > 0, "an all-zero explanation"
    # explained as in eval mode: probabilities are the eval-mode ones (dropout off, running statistics)
    torch.testing.assert_close(e.probabilities, expected_probs)
    assert torch.equal(e.target, expected_probs.argmax(1))
    assert e.passes >= 2
    assert (e.delta is not None) == (info.has_delta and name != "gradient_shap")  # noise: no delta
    # deterministic under a seed
    again = cnnlens.explain(model, x, name, batch_size=3, seed=7, **_options(name))
    torch.testing.assert_close(again.attributions, e.attributions, rtol=0, atol=0)
    _assert_unchanged(model, before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fail_at", [1, 2])
def test_model_unchanged_when_the_method_raises(name: str, fail_at: int) -> None:
    model = _model()
    x = torch.randn(2, C, H, W)
    before = _snapshot(model)
    model.boom.fail_at = fail_at
    with pytest.raises((RuntimeError, cnnlens.CnnlensError), match="boom"):  # CAMs' layer probe wraps it
        cnnlens.explain(model, x, name, batch_size=1, **_options(name))
    model.boom.fail_at = 0
    _assert_unchanged(model, before)
    assert model.training and model.bn1.training


def test_smoothing_any_method_keeps_the_contract() -> None:
    model = _model()
    before = _snapshot(model)
    x = torch.randn(2, C, H, W)
    e = cnnlens.explain(model, x, "input_x_gradient", smooth="vargrad", smooth_samples=3, batch_size=4)
    assert e.attributions.shape == x.shape and (e.attributions >= 0).all()
    _assert_unchanged(model, before)
