"""A user's forward error propagates unchanged from every method that cuts the model at a layer (issue 26, case 8).

The traced cut (``torch.fx``) falls back to the hooked path (full forward passes) where tracing cannot follow the
model; it must not treat an error raised by the user's own forward as such a failure and quietly try again.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.attribution import methods


class PickyError(Exception):
    """The user's own exception type."""


class Picky(nn.Module):
    """Raises a new ``PickyError`` (kept in ``raised``) whenever an activation is huge: the user's own check."""

    def __init__(self) -> None:
        super().__init__()
        self.raised: list[PickyError] = []

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if bool((h.detach().abs() > 1e4).any()):  # detached: no relevance rule needed for the check
            self.raised.append(PickyError(f"activation too large (call {len(self.raised) + 1})"))
            raise self.raised[-1]
        return h


class Net(nn.Module):
    """conv1 -> ReLU -> conv2 -> ReLU -> picky -> GAP -> fc. ``untraceable``: a branch on a tensor's value (torch.fx
    cannot trace it; the numbers are those of the traceable net)."""

    def __init__(self, untraceable: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.picky = Picky()
        self.fc = nn.Linear(6, 3)
        self.untraceable = untraceable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        if self.untraceable and bool(h.sum() > -1e9):  # always true: only fx cannot follow it
            h = h + 0.0
        return self.fc(self.picky(h).mean((2, 3)))


def _net(untraceable: bool = False) -> Net:
    torch.manual_seed(0)
    return Net(untraceable).eval()


X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
BAD = X * 1e5  # the picky module raises on these
CUTTING = [m.name for m in methods() if m.category in ("layer", "neuron")] + ["ablation_cam", "score_cam"]


def _options(name: str) -> dict:
    info = {m.name: m for m in methods()}[name]
    opts: dict = {"layer": "conv2", "progress": False}
    if "steps" in info.params:
        opts["steps"] = 3
    if "samples" in info.params:
        opts["samples"] = 2
    if name == "layer_conductance":
        opts["points"] = 4
    if info.needs_baseline == "distribution":
        opts["baseline"] = torch.zeros(2, 3, 8, 8)
    if info.category == "neuron":
        opts["neuron"] = 1
        if "mask" in info.params:
            opts["mask"] = "grid:4"
    return opts


@pytest.mark.parametrize("name", CUTTING)
def test_the_users_forward_error_propagates_once_unchanged(name: str) -> None:
    model = _net()
    with pytest.raises(PickyError) as caught:
        cnnlens.explain(model, BAD, name, **_options(name))
    # the very object the user's module raised, raised once: no second try on another path
    assert model.picky.raised == [caught.value]
    assert str(caught.value) == "activation too large (call 1)"


@pytest.mark.parametrize("name", ["layer_integrated_gradients", "ablation_cam", "layer_feature_ablation"])
def test_the_users_error_propagates_where_the_traced_cut_was_already_trusted(name: str) -> None:
    model = _net()
    first = cnnlens.explain(model, X, name, **_options(name))  # the traced cut is checked and trusted from now on
    assert first.info["cut"]["path"] == "traced"
    with pytest.raises(PickyError, match="activation too large"):
        cnnlens.explain(model, BAD, name, **_options(name))
    again = cnnlens.explain(model, X, name, **_options(name))  # the cut was not given up for the user's error
    assert again.info["cut"] == {"layer": "conv2", "path": "traced", "reason": None}


@pytest.mark.parametrize(
    "name",
    ["layer_integrated_gradients", "ablation_cam", "layer_feature_ablation", "layer_gradient", "neuron_gradient"],
)
def test_a_model_fx_cannot_trace_is_explained_on_the_hooked_path_with_the_reason(name: str) -> None:
    traced = cnnlens.explain(_net(), X, name, **_options(name))
    hooked = cnnlens.explain(_net(untraceable=True), X, name, **_options(name))
    torch.testing.assert_close(hooked.attributions, traced.attributions, rtol=1e-5, atol=1e-6)
    if name in ("layer_integrated_gradients", "ablation_cam", "layer_feature_ablation"):  # they cut the model
        assert traced.info["cut"]["path"] == "traced"
        assert hooked.info["cut"]["path"] == "hooked"
        assert "torch.fx cannot trace" in hooked.info["cut"]["reason"]


class CrossingMean(nn.Module):
    """A batch-wide value (``x.mean()``) crosses the cut: the traced head cannot hand it over row by row, the model
    itself runs fine."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean()
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean((2, 3))) + m


def test_a_traced_cut_that_fails_at_run_time_falls_back_with_the_reason() -> None:
    torch.manual_seed(0)
    model = CrossingMean().eval()
    e = cnnlens.explain(model, X, "ablation_cam", layer="conv2", progress=False)
    assert e.info["cut"]["path"] == "hooked"
    assert "a value crossing the cut is not a tensor with one row per input" in e.info["cut"]["reason"]
    assert torch.isfinite(e.attributions).all()


class FailsOnce(nn.Module):
    """Raises on its first call only (say, a resource that is not ready yet): a user's error that a second try on
    another path would not repeat, so a fallback would hide it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            raise PickyError("not ready")
        return h


@pytest.mark.parametrize("name", CUTTING)
def test_an_error_the_model_raises_once_is_not_hidden_by_a_second_try(name: str) -> None:
    model = _net()
    model.picky = FailsOnce()
    with pytest.raises(PickyError, match="not ready"):
        cnnlens.explain(model, X, name, **_options(name))
