"""Cost is counted honestly: every method's passes are the rows the model really saw; the scorecard separates the
one-off set-up from the per-image time; explain() has a progress bar of passes and one progress= switch."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import cnnlens
import cnnlens.attribution._base as base
from cnnlens.attribution import methods
from test_contract import C, H, W, _model, _options

pytestmark = pytest.mark.usefixtures("one_thread")


class Counting(nn.Module):
    """Counts the rows of every batch the wrapped model runs on (what a pass is), and can be slow the first time
    it runs (a one-off set-up)."""

    def __init__(self, inner: nn.Module, first_call_seconds: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0
        self.first_call_seconds = first_call_seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows == 0 and self.first_call_seconds:
            time.sleep(self.first_call_seconds)
        self.rows += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("name", [m.name for m in methods()])
def test_passes_are_the_rows_the_model_saw(name: str) -> None:
    model = Counting(_model().eval())
    x = torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(2))
    options = {k: (f"inner.{v}" if k == "layer" else v) for k, v in _options(name).items()}
    e = cnnlens.explain(model, x, name, batch_size=3, seed=7, **options)
    assert e.passes == model.rows > 0


def test_the_scorecard_separates_set_up_from_time_per_image() -> None:
    from cnnlens.quality import scorecard

    model = Counting(_model().eval(), first_call_seconds=0.6)
    x = torch.randn(3, C, H, W, generator=torch.Generator().manual_seed(3))
    card = scorecard(model, x, ["saliency"], metrics=["detail"], progress=False)
    setup, per_image = card.value("saliency", "setup_seconds"), card.value("saliency", "seconds_per_image")
    assert setup >= 0.5  # the one-off 0.6 s lands in the set-up column ...
    assert per_image < setup / 2  # ... not in the time per image
    assert card.value("saliency", "passes_per_image") == 1.0


class _Spy:
    """Records the bars explain() opens (as the real progress_bar would open them)."""

    def __init__(self) -> None:
        self.bars: list = []

    def __call__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        from cnnlens.core.progress import progress_bar

        bar = progress_bar(*args, **kwargs)
        bar.shown = not bar.disable  # (closing a bar disables it)
        self.bars.append(bar)
        return bar


def test_explain_counts_its_passes_on_a_bar_and_one_switch_silences_it(monkeypatch) -> None:
    spy = _Spy()
    monkeypatch.setattr(base, "progress_bar", spy)
    model, x = _model().eval(), torch.randn(2, C, H, W)
    e = cnnlens.explain(model, x, "integrated_gradients", steps=8)
    (bar,) = spy.bars
    assert bar.n == e.passes and bar.shown and bar.desc.startswith("integrated_gradients")
    cnnlens.explain(model, x, "saliency", smooth="smoothgrad", smooth_samples=3)
    assert spy.bars[-1].n == 2 + 2 * 3  # the logits pass, then the noisy copies of the smoothing
    cnnlens.explain(model, x, "saliency", progress=False)
    assert not spy.bars[-1].shown
