"""Where the tail after a layer acts on each unit separately, conductance needs the head at the two ends only.

The cut recognises such tails (per-unit functions, then affine maps, nothing skipping the layer) and nothing else;
there every path gives unit ``u`` the same conductance, ``F(y0 with u set to y1_u) - F(y0)``, which the test
computes exactly from the model itself (a forward hook replacing the layer's output, one unit at a time).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import _nets
import cnnlens
from cnnlens.core.model_guard import frozen
from cnnlens.models import cut_at
from test_cam_reference import _layer_output

pytestmark = pytest.mark.usefixtures("one_thread")
T = torch.Tensor


@pytest.mark.parametrize("kind", ["module", "inplace", "functional", "mixed"])
def test_per_unit_tails_are_recognised_and_only_they(kind) -> None:
    net = _nets.residual_cnn(kind)
    with frozen(net):
        assert cut_at(net, "head").per_unit  # ReLU (however written), average pooling, flatten, linear
        assert not cut_at(net, "b2c1").per_unit  # a convolution mixes units before the next ReLU
        assert not cut_at(net, "pool").per_unit
    act = _nets.act_net("silu")
    with frozen(act):
        assert not cut_at(act, "c2").per_unit  # the residual addition carries the input across the cut
        assert cut_at(act, "pool").per_unit  # flatten and linear only


def exact_per_unit_conductance(net: nn.Module, x: T, x0: T, target: T) -> T:
    """``F(y0 with unit u set to y1_u) - F(y0)`` for every unit of ``head``: the conductance of a per-unit tail."""
    y1, y0 = _layer_output(net, "head", x), _layer_output(net, "head", x0)
    out = torch.zeros_like(y1)
    for i in range(x.shape[0]):
        n = y1[i].numel()
        rows = y0[i].flatten().repeat(n, 1)
        rows[torch.arange(n), torch.arange(n)] = y1[i].flatten()
        rows = torch.cat([rows.view(n, *y1.shape[1:]), y0[i : i + 1]])
        h = net.head.register_forward_hook(lambda _m, _a, _o, rows=rows: rows)
        try:
            with torch.no_grad():
                scores = net(x0[i : i + 1].expand(n + 1, *x.shape[1:]))[:, target[i]]
        finally:
            h.remove()
        out[i] = (scores[:-1] - scores[-1]).view(y1.shape[1:])
    return out


def test_conductance_runs_the_head_at_the_ends_only_where_the_tail_is_per_unit() -> None:
    net, x = _nets.residual_cnn("module"), _nets.inputs(3)
    x0, target = torch.zeros_like(x), torch.tensor([1, 3, 4])
    exact = exact_per_unit_conductance(net, x, x0, target)
    e = cnnlens.explain(net, x, "layer_conductance", layer="head", baseline=x0, target=target)
    assert e.info["points"] == 2 and e.info["per_unit_tail"] and e.info["rows"]["head"] == 2 * 3
    assert float((e.attributions - exact).abs().sum() / exact.abs().sum()) < 2e-3  # ReLU kinks: tail quadrature
    assert (e.delta.abs() <= 0.01 * exact.flatten(1).sum(1).abs()).all()
    other = cnnlens.explain(net, x, "layer_conductance", layer="b2c1", baseline=x0, target=target, steps=8)
    assert other.info["points"] == 16 and not other.info["per_unit_tail"]
