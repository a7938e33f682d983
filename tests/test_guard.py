"""`frozen`: inside, eval mode and no parameter gradients; afterwards every flag, gradient and train() side effect
as the caller left it — also when the block changes them itself or raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlens.core.model_guard import frozen


class Counting(nn.Module):
    """A module whose own ``train()`` override must run when the model is put in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.calls: list[bool] = []

    def train(self, mode: bool = True) -> Counting:
        self.calls.append(mode)
        return super().train(mode)


def _model() -> nn.Sequential:
    m = nn.Sequential(Counting(), nn.Linear(4, 3))
    m[0].train()  # a sub-module in train mode inside a model in eval mode
    m[1].eval()
    m.training = False
    m[0].conv.weight.requires_grad_(False)  # one frozen, one with a gradient already there
    m[1].weight.grad = torch.ones_like(m[1].weight)
    m[0].calls.clear()
    return m


def _state(m: nn.Module) -> list:
    return [
        [x.training for x in m.modules()],
        [p.requires_grad for p in m.parameters()],
        [None if p.grad is None else p.grad.clone() for p in m.parameters()],
    ]


def _same(a: list, b: list) -> bool:
    grads_a, grads_b = a[2], b[2]
    return a[:2] == b[:2] and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in zip(grads_a, grads_b, strict=True)
    )


@pytest.mark.parametrize("raises", [False, True])
def test_frozen_restores_what_the_block_changed(raises: bool) -> None:
    m = _model()
    before = _state(m)
    grad = m[1].weight.grad
    with pytest.raises(RuntimeError) if raises else torch.no_grad(), frozen(m):
        assert not any(x.training for x in m.modules())
        assert not any(p.requires_grad for p in m.parameters())
        assert m[0].calls == [False]  # the override ran once, through model.eval()
        m[0].conv.weight.requires_grad_(True)  # the block flips things itself
        m[0].bn.train()
        m[1].weight.grad = None
        m[0].conv.bias.grad = torch.zeros_like(m[0].conv.bias)
        if raises:
            raise RuntimeError("inside")
    assert _same(_state(m), before)
    assert m[1].weight.grad is grad  # the very tensor the caller had, not a copy


def test_frozen_on_a_model_already_frozen_calls_no_train_override() -> None:
    m = _model()
    m.eval()
    m[0].calls.clear()
    for p in m.parameters():
        p.requires_grad_(False)
    before = _state(m)
    with frozen(m):
        pass
    assert m[0].calls == []
    assert _same(_state(m), before)
