"""The shared pipeline: batching bounds every forward pass, automatic sizing backs off on out-of-memory; the
engine's parts: layer views, the run's cache, what a rule mode may add to a backward pass."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens import CnnlensError
from cnnlens.attribution import get_method, methods
from cnnlens.engine import Context, Objective, ReferencePass


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


# ---- the engine's parts ------------------------------------------------------------------------------------------
def test_a_layer_view_is_the_same_run_seen_from_the_layer() -> None:
    ctx = Context.create(Recorder(), X, target=1, batch_size=2)
    view = ctx.at_layer("net.1")
    assert view is ctx.at_layer("net.1") and view.parent is ctx and view.layer == "net.1"
    assert view.inputs.shape == (3, 4, 8, 8) and view.state is not None
    torch.testing.assert_close(view.logits, ctx.logits)
    assert torch.equal(view.targets, torch.tensor([1, 1, 1])) and torch.equal(ctx.targets, view.targets)
    twice = ctx.derive(X.repeat_interleave(2, 0), 2)
    seen = twice.at_layer("net.1")
    assert seen.parent is twice and torch.equal(seen.targets, view.targets.repeat_interleave(2))
    torch.testing.assert_close(seen.target_scores(), view.target_scores().repeat_interleave(2))
    assert ctx.shared is view.shared is seen.shared and ctx.passes == ctx.shared.passes > 0


def test_the_run_has_a_declared_cache_shared_by_its_contexts() -> None:
    ctx = Context.create(Recorder(), X)
    ctx.derive(X.repeat_interleave(2, 0), 2).shared.cache["kept"] = 1
    assert ctx.shared.cache == {"kept": 1}


class _Start:
    """A rule mode that starts the backward pass from ``factor`` times the score's gradient at the logits."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, logits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self.factor * grad


def test_a_mode_with_a_start_sets_where_the_backward_pass_begins() -> None:
    ctx = Context.create(Recorder(), X)
    plain = ctx.backward(X, ctx.owners())
    mode = _Start(3.0)
    assert isinstance(mode, Objective) and not isinstance(mode, ReferencePass)
    tripled = ctx.backward(X, ctx.owners(), mode)
    torch.testing.assert_close(tripled.grad, 3 * plain.grad)
    torch.testing.assert_close(tripled.scores, plain.scores)


class _Flaky(_Start):
    """A reference-pass mode whose first replay fails; ``retry`` asks for the chunk once more."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.events: list[str] = []

    @contextmanager
    def recording(self) -> Iterator[None]:
        self.events.append("record")
        yield

    @contextmanager
    def replaying(self) -> Iterator[None]:
        self.events.append("replay")
        if self.events.count("replay") == 1:
            raise KeyError("changed")
        yield

    def retry(self, err: Exception) -> bool:
        self.events.append("retry")
        return isinstance(err, KeyError)


def test_a_reference_pass_mode_is_asked_whether_a_failed_chunk_runs_again() -> None:
    ctx = Context.create(Recorder(), X, batch_size=8)
    mode = _Flaky()
    assert isinstance(mode, ReferencePass)
    b = ctx.backward(X, ctx.owners(), mode, reference=torch.zeros_like(X))
    assert mode.events == ["record", "replay", "retry", "record", "replay"]
    torch.testing.assert_close(b.grad, ctx.backward(X, ctx.owners()).grad)
    assert b.reference_scores is not None and b.reference_scores.shape == (3,)
