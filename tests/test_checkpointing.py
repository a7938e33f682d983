"""Gradient checkpointing is a memory trick, not a different function (issue 26, case 7).

A checkpointed model is explained exactly like the same model without checkpointing (torchvision's
``memory_efficient=True``, timm's ``set_grad_checkpointing()``), its flags are put back afterwards (also on error),
and checkpointing cnnlens cannot switch off (``torch.utils.checkpoint`` in the model's own forward code) is refused
with the cause named instead of torch's raw ``CheckpointError``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import cnnlens

torchvision = pytest.importorskip("torchvision")

METHODS = {
    "deeplift": {},
    "grad_cam": {},
    "saliency": {},
    "integrated_gradients": {"steps": 4},
    "lrp": {},
    "guided_backprop": {},
    "layer_integrated_gradients": {"steps": 4},
    "ablation_cam": {},
}
X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _densenet(memory_efficient: bool) -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.DenseNet(
        growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=5, memory_efficient=memory_efficient
    )
    return net.eval()


def _flags(model: nn.Module, flag: str) -> list[bool]:
    return [vars(m)[flag] for m in model.modules() if flag in vars(m)]


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()],
    }


def _assert_same(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert before["training"] == after["training"] and before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key


@pytest.mark.parametrize("name", list(METHODS))
def test_a_memory_efficient_densenet_is_explained_as_the_same_net_without_checkpointing(name: str) -> None:
    plain, efficient = _densenet(False), _densenet(True)
    before = _snapshot(efficient)
    want = cnnlens.explain(plain, X, name, progress=False, **METHODS[name])
    got = cnnlens.explain(efficient, X, name, progress=False, **METHODS[name])
    torch.testing.assert_close(got.attributions, want.attributions, rtol=1e-5, atol=1e-6)
    assert len(got.info["checkpointing_off"]) == 4  # the four dense layers' memory_efficient flags
    assert "checkpointing_off" not in want.info
    assert _flags(efficient, "memory_efficient") == [True] * 4  # put back
    _assert_same(efficient, before)


def test_the_flags_are_put_back_when_the_method_raises() -> None:
    efficient = _densenet(True)
    with pytest.raises(cnnlens.CnnlensError, match="target"):
        cnnlens.explain(efficient, X, "deeplift", target=99, progress=False)
    assert _flags(efficient, "memory_efficient") == [True] * 4


@pytest.mark.parametrize("name", ["deeplift", "grad_cam", "saliency", "integrated_gradients", "lrp"])
def test_a_timm_net_with_grad_checkpointing_is_explained_as_without(name: str) -> None:
    timm = pytest.importorskip("timm")

    def make(checkpointed: bool) -> nn.Module:
        torch.manual_seed(0)
        net = timm.create_model("test_resnet", pretrained=False, num_classes=5).eval()
        if checkpointed:
            net.set_grad_checkpointing()
        return net

    plain, checkpointed = make(False), make(True)
    before = _snapshot(checkpointed)
    want = cnnlens.explain(plain, X, name, progress=False, **METHODS[name])
    got = cnnlens.explain(checkpointed, X, name, progress=False, **METHODS[name])
    torch.testing.assert_close(got.attributions, want.attributions, rtol=1e-5, atol=1e-6)
    assert "grad_checkpointing" in got.info["checkpointing_off"]
    assert checkpointed.grad_checkpointing is True
    _assert_same(checkpointed, before)


class OwnCheckpoint(nn.Module):
    """Checkpoints a block in its own forward code (no flag cnnlens knows)."""

    def __init__(self, checkpointed: bool, reentrant: bool = False) -> None:
        super().__init__()
        self.checkpointed, self.reentrant = checkpointed, reentrant
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = checkpoint(self.block, x, use_reentrant=self.reentrant) if self.checkpointed else self.block(x)
        return self.fc(h.mean((2, 3)))


def _own(checkpointed: bool, reentrant: bool = False) -> OwnCheckpoint:
    torch.manual_seed(0)
    return OwnCheckpoint(checkpointed, reentrant).eval()


def test_grad_cam_at_the_checkpointed_block_itself_equals_the_plain_model() -> None:
    """The default layer is the checkpointed block (every path passes through it): its output is captured outside
    the checkpoint, so Grad-CAM is exact there."""
    got = cnnlens.explain(_own(True), X[:, :, :8, :8], "grad_cam", progress=False)
    want = cnnlens.explain(_own(False), X[:, :, :8, :8], "grad_cam", progress=False)
    assert got.info["default_layer"]["layer"] == "block" and bool(want.attributions.abs().max() > 0)
    torch.testing.assert_close(got.attributions, want.attributions)


@pytest.mark.parametrize("name", ["deeplift", "lrp"])
def test_checkpointing_in_the_models_own_code_is_refused_naming_the_cause(name: str) -> None:
    model = _own(True)
    with pytest.raises(cnnlens.CnnlensError, match="gradient checkpointing .* switched off"):
        cnnlens.explain(model, X[:, :, :8, :8], name, progress=False)


def test_a_reentrant_checkpoint_is_refused_naming_the_cause() -> None:
    with pytest.raises(cnnlens.CnnlensError, match="gradient checkpointing .*use_reentrant=True"):
        cnnlens.explain(_own(True, reentrant=True), X[:, :, :8, :8], "saliency", progress=False)


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients"])
def test_plain_gradients_through_a_non_reentrant_checkpoint_are_the_models(name: str) -> None:
    x = X[:, :, :8, :8]
    want = cnnlens.explain(_own(False), x, name, progress=False, **METHODS[name])
    got = cnnlens.explain(_own(True), x, name, progress=False, **METHODS[name])
    torch.testing.assert_close(got.attributions, want.attributions, rtol=1e-6, atol=1e-7)
