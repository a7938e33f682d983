"""The shared pipeline: batching bounds every forward pass, automatic sizing backs off on out-of-memory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens import CnnlensError
from cnnlens.attribution import get_method, methods


class Recorder(nn.Module):
    """A small CNN that records every batch size it sees and can pretend to run out of memory."""

    def __init__(self, oom_above: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 3)
        self.sizes: list[int] = []
        self.oom_above = oom_above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.oom_above is not None and x.shape[0] > self.oom_above:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
        self.sizes.append(x.shape[0])
        return self.fc(self.net(x))


X = torch.randn(3, 3, 8, 8)


@pytest.mark.parametrize(
    ("name", "options", "sizes"),
    [
        ("saliency", {}, [3]),  # one pass gives gradients and logits
        # logits, baseline scores, then 3 x 10 path points in as few passes of <= 4 as possible
        ("integrated_gradients", {"steps": 10}, [3, 3] + [4] * 7 + [2]),
        # pairs of (reference, input) passes of 2 pairs, then 1 (a chunk of pairs is held at once); the
        # reference passes give the baseline scores
        ("deeplift", {}, [2, 2, 1, 1]),
        # logits, then 3 x 5 noisy path points
        ("gradient_shap", {"samples": 5, "stdev": 0.1}, [3, 4, 4, 4, 3]),
    ],
)
def test_batch_size_bounds_every_forward_pass(name: str, options: dict, sizes: list[int]) -> None:
    model = Recorder()
    e = cnnlens.explain(model, X, name, batch_size=4, **options)
    assert model.sizes == sizes
    assert e.passes == sum(sizes)  # passes counts every model input exactly once


@pytest.mark.parametrize("name", ["saliency", "integrated_gradients", "deeplift_shap"])
def test_automatic_batch_size_backs_off_on_out_of_memory(name: str) -> None:
    options = {"baseline": torch.zeros(2, 3, 8, 8)} if name == "deeplift_shap" else {}
    reference = cnnlens.explain(Recorder(), X, name, batch_size=1, **options)
    model = Recorder(oom_above=3)
    e = cnnlens.explain(model, X, name, **options)
    assert max(model.sizes) <= 3 and max(model.sizes) >= 2
    torch.testing.assert_close(e.attributions, reference.attributions)
    assert e.passes == reference.passes  # failed attempts are not counted


def test_out_of_memory_with_a_fixed_batch_size_says_what_to_do() -> None:
    with pytest.raises(CnnlensError, match="smaller batch_size"):
        cnnlens.explain(Recorder(oom_above=3), X, "integrated_gradients", batch_size=8)


def test_other_errors_are_not_mistaken_for_out_of_memory() -> None:
    class Broken(Recorder):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        cnnlens.explain(Broken(), X, "saliency")


def test_method_classes_are_usable_directly() -> None:
    cls = get_method("integrated_gradients")
    direct = cls(steps=8)(Recorder(), X, target=1)
    via_explain = cnnlens.explain(Recorder(), X, "integrated_gradients", steps=8, target=1)
    torch.testing.assert_close(direct.attributions, via_explain.attributions)
    assert direct.options["steps"] == 8 and torch.equal(direct.target, torch.tensor([1, 1, 1]))


def test_registry_describes_each_method() -> None:
    assert [m.name for m in methods("cam")] == [m.name for m in methods() if m.category == "cam"] != []
    with pytest.raises(CnnlensError, match="unknown category 'cams'. Did you mean cam"):
        methods("cams")
    for info in methods():
        assert info.category and info.summary and info.output in ("input", "map", "layer", "layer_map")
        assert info.needs_baseline in (None, "single", "distribution")
