"""The engine every method runs on: what is explained, where attributions land, batched model calls, passes.

A :class:`Context` holds one run's inputs and answers the questions a method asks: the explained score of any
rows (``scores``, ``evaluate``), its gradients and the outputs and gradients of chosen layers (``backward``),
the model's logits and targets. Two things are explicit parameters of the engine:

* **what is explained**: a class score (``target``: the predicted class, an index, one per image, or a callable
  ``logits -> score per row``) or a :class:`~cnnlens.engine._neuron.Neuron` (``neuron=``): the value of one
  unit of a layer, computed by the part of the model before it;
* **where attributions land**: the model's inputs, or a layer: ``ctx.at_layer(layer)`` is the same run seen from
  the layer; its inputs are the layer's activations (the model's head ran once per image) and its model is the
  rest of the network (the tail). Every method written for inputs runs on it unchanged.

``batch_size`` is the one batching knob: the most rows in one forward pass (model inputs, or activations for
the tail), used the same way by IG steps, noise samples, DeepLIFT pairs and perturbations. ``None`` picks a
size from a memory budget and halves it whenever memory runs out. ``ctx.derive`` makes the context of noisy
copies for smoothing; all contexts of a run share its pass counter, random draws and cuts.

A context is made of parts it delegates to: :class:`~cnnlens.engine._explained.ExplainedScore` (what is explained,
the targets and the logits record), :class:`~cnnlens.engine._batching.Batching` (chunked calls, automatic size)
and the run's :class:`~cnnlens.engine._batching.Shared` (model, counter, draws, cuts, caches); its backward
passes are in :mod:`~cnnlens.engine._backward`, its layer views in :mod:`~cnnlens.engine._layer_view`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from ..core.errors import CnnlensError
from ..core.hooks import capture
from ..models import State, probed_default_layer
from . import _backward, _layer_view
from ._backward import Backward
from ._batching import Batching, Rows, Shared
from ._explained import ExplainedScore, Network, Target, check_logits, network_logits
from ._neuron import Neuron

T = torch.Tensor


class Context:
    """One explanation run: a frozen model, checked inputs, what is explained, a pass counter and random draws.

    Rows: a method evaluates the model on ``rows`` (e.g. IG path points) each owned by one input image
    (``owner[i]`` is the image row ``i`` belongs to); the target of a row is its owner's target.

    Made from its parts (``Context.create`` makes the context of a model's inputs): the run's ``shared`` parts,
    the ``inputs``, what is ``explained``; a layer view also has the ``network`` its rows run through (the tail),
    its ``layer``, the ``state`` crossing the layer and the ``parent`` context on the model's inputs.
    """

    def __init__(
        self,
        shared: Shared,
        inputs: T,
        explained: ExplainedScore,
        *,
        network: Network | None = None,
        layer: str | None = None,
        state: State | None = None,
        parent: Context | None = None,
        batching: Batching | None = None,
    ) -> None:
        self.shared = shared
        self.inputs = inputs
        self.explained = explained
        self.network: Network = network if network is not None else lambda rows, owner, st: shared.model(rows)
        self.layer = layer
        """Where these inputs are: ``None`` for the model's inputs, else the layer whose activations they are."""
        self.state = state
        self.parent = parent
        """The context on the model's inputs a layer view was made from (``None`` for that context)."""
        self.batching = batching if batching is not None else Batching(shared, inputs, layer is not None)
        self.info: dict = {}  # method-specific diagnostics, copied to Explanation.info
        self._views: dict[str, Context] = {}

    @classmethod
    def create(
        cls,
        model: nn.Module,
        inputs: T,
        target: Target = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        *,
        neuron: Neuron | None = None,
    ) -> Context:
        """The context of ``inputs`` to ``model``, explained for ``target`` (or for ``neuron``)."""
        shared = Shared(model, batch_size, generator if generator is not None else torch.Generator().manual_seed(0))
        if neuron is None:
            return cls(shared, inputs, ExplainedScore(target, inputs.shape[0]))
        if neuron.layer is None:  # the default layer, found by a probe pass (kept)
            found, probed = probed_default_layer(model, (1, *inputs.shape[1:]))
            shared.passes += int(probed)
            neuron = Neuron(found.name, neuron.spec)
        cut = shared.cut(neuron.layer)
        _layer_view.check_inner(shared, cut, inputs)
        return cls(shared, inputs, ExplainedScore(target, inputs.shape[0], neuron, cut.inner))

    # ---- the run's shared parts ---------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        return self.shared.model

    @property
    def batch_size(self) -> int | None:
        return self.shared.batch_size

    @property
    def generator(self) -> torch.Generator:
        return self.shared.generator

    @property
    def passes(self) -> int:
        """Rows evaluated so far in this run (each row through the model, its head or its tail counts once)."""
        return self.shared.passes

    def count(self, rows: int) -> None:
        """Add ``rows`` model evaluations the method made itself (e.g. a probe pass)."""
        self.shared.count(rows)

    @property
    def bar(self) -> Any:
        """The run's progress bar of passes (set by ``Method.__call__``), or ``None``."""
        return self.shared.bar

    @bar.setter
    def bar(self, bar: Any) -> None:
        self.shared.bar = bar

    # ---- what is explained --------------------------------------------------------------------------------------
    @property
    def neuron(self) -> Neuron | None:
        return self.explained.neuron

    @property
    def n(self) -> int:
        return self.inputs.shape[0]

    def owners(self, repeat: int = 1) -> T:
        """Owner index of ``repeat`` consecutive copies of every input row: [0,0,..,1,1,..]."""
        return torch.arange(self.n, device=self.inputs.device).repeat_interleave(repeat)

    @property
    def logits(self) -> T:
        """Logits of the inputs (one forward pass per image, computed once)."""
        if self.explained.logits is None:
            self.explained.logits = network_logits(self.network, self.batching, self.inputs, self.owners())
        return self.explained.logits

    def target_scores(self) -> T:
        """f(x): the explained score of each input (from the logits pass for class scores); resolves the targets
        on these logits, so that rows scored later (perturbed, ablated) are scored for the same classes."""
        if self.neuron is not None:
            if self.explained.values is None:
                self.explained.values = self.scores(self.inputs, self.owners())
            return self.explained.values
        _ = self.targets
        return self.select(self.logits, self.owners())

    @property
    def targets(self) -> T | None:
        """One class index per image (``None`` when the target is a callable)."""
        if self.explained.targets is None and not self.explained.by_function:
            self.explained.targets = self.explained.resolve(self.logits)
        return self.explained.targets

    def select(self, logits: T, owner: T) -> T:
        """The class score each row is explained for: its owner's target logit, or the callable's value."""
        return self.explained.select(logits, owner)

    # ---- contexts derived from this one --------------------------------------------------------------------------
    def derive(self, inputs: T, repeat: int) -> Context:
        """The context of ``repeat`` consecutive rows per image (e.g. noisy copies): the same model, explained
        score (targets repeated) and batching; its passes count for this run."""
        if inputs.shape[0] != self.n * repeat:
            raise CnnlensError(f"derive: {inputs.shape[0]} rows given for {self.n} images x {repeat}")
        targets = self.targets if self.neuron is None else None
        return Context(
            self.shared,
            inputs,
            self.explained.repeated(targets, repeat),
            network=self.network,
            layer=self.layer,
            state=None if self.state is None else self.state.take(self.owners(repeat)),
            parent=self.parent,
            batching=self.batching.like(inputs, self.layer is not None),
        )

    def at_layer(self, layer: str | nn.Module) -> Context:
        """This run seen from ``layer``: a context whose inputs are the layer's activations for these inputs
        ``(B, ...)`` (the model's head runs once per image) and whose model is the rest of the network (the tail;
        values that cross the layer, e.g. skip connections, come from these inputs). ``ctx.at_layer(L).logits``
        equals ``ctx.logits``; when the traced cut disagrees with the model it is replaced by the hooked one."""
        if self.neuron is not None or self.layer is not None:
            raise CnnlensError("at_layer needs a context on the model's inputs that explains class scores")
        cut = self.shared.cut(layer)
        if cut.name not in self._views:
            self._views[cut.name] = _layer_view.layer_view(self, cut)
            self.info["cut"] = {"layer": cut.name, "path": cut.path, "reason": cut.reason}
        return self._views[cut.name]

    def layer_activations(self, layer: str | nn.Module, rows: T | Rows) -> T:
        """The output of ``layer`` for input-space ``rows``, without gradients (only what it depends on runs)."""
        return _layer_view.layer_activations(self, layer, rows)

    def project(self, rows: T) -> tuple[T, State]:
        """``(activations, state)`` of input-space ``rows`` at this view's layer (the head only, no gradients)."""
        return _layer_view.project(self, rows)

    # ---- batched model calls ------------------------------------------------------------------------------
    def evaluate(self, rows: T, owner: T, state: State | None = None) -> tuple[T, T]:
        """``(output, explained scores)`` of one chunk of rows, under the caller's gradient mode: the output is
        the model's logits (for a neuron: the neuron's layer output). ``state``: a layer view's rows with their own
        values for what crosses the layer (default: their owners')."""
        out = self.output(rows, owner, state)
        return out, self.explained.score(out, owner)

    def output(self, rows: T, owner: T, state: State | None = None) -> Any:
        """The model's logits of one chunk of rows (for a neuron: its layer's output), counted."""
        n = rows.shape[0]
        if self.explained.inner is not None:
            out = self.explained.inner(rows)
        else:
            out = check_logits(self.network(rows, owner, state), n)
        self.shared.count(n)
        return out

    def run(self, fn: Callable[[slice], Any], n_rows: int, rows_per_item: int = 1) -> list:
        """Apply ``fn`` chunk by chunk; on out-of-memory with automatic sizing, halve and retry the chunk."""
        return self.batching.run(fn, n_rows, rows_per_item)

    def logits_due(self, x: Any) -> bool:
        """Whether a pass over rows ``x`` also gives the logits record: they are the inputs themselves, whose
        logits are not known yet (class scores only)."""
        return x is self.inputs and self.explained.logits is None and self.explained.inner is None

    def scores(self, x: T | Rows, owner: T, state: State | None = None) -> T:
        """Explained scores of every row, without gradients."""
        record = self.logits_due(x)
        if not record:
            _ = self.targets if self.neuron is None else None

        def step(sl: slice) -> tuple[T, T]:
            with torch.no_grad():
                return self.evaluate(x[sl], owner[sl], None if state is None else state[sl])

        parts = self.run(step, x.shape[0])
        if record:
            self.explained.logits = torch.cat([out for out, _ in parts])
        return torch.cat([s for _, s in parts])

    def layer_outputs(self, layers: Sequence[nn.Module], inputs: bool = False) -> list[T]:
        """Outputs (or inputs) of ``layers`` for the inputs, without gradients; the same passes give the logits."""
        record = self.logits_due(self.inputs)

        def step(sl: slice) -> tuple[T, list[T]]:
            with torch.no_grad(), capture(layers, inputs=inputs) as outs:
                out, _ = self.evaluate(self.inputs[sl], self.owners()[sl])
            return out, outs

        parts = self.run(step, self.n)
        if record:
            self.explained.logits = torch.cat([out for out, _ in parts])
        return [torch.cat([outs[i] for _, outs in parts]) for i in range(len(layers))]

    # ---- gradients ------------------------------------------------------------------------------------------
    def backward(
        self,
        x: T | Rows,
        owner: T,
        mode: AbstractContextManager | None = None,
        *,
        reference: T | None = None,
        layers: Sequence[nn.Module] = (),
        input_grad: bool = True,
        state: State | None = None,
    ) -> Backward:
        """Scores of every row with their gradients, and the outputs of ``layers`` with the gradients of the
        scores w.r.t. them, chunked; see :func:`cnnlens.engine._backward.backward`."""
        return _backward.backward(self, x, owner, mode, reference, layers, input_grad, state)

    def gradients(
        self, x: T | Rows, owner: T, mode: AbstractContextManager | None = None, reference: T | None = None
    ) -> tuple[T, T]:
        """(scores, d score / d x) for every row, chunked. ``mode`` is active during forward passes only.

        ``reference``: one reference row per row (DeepLIFT): see ``backward``.
        """
        b = self.backward(x, owner, mode, reference=reference)
        assert b.grad is not None
        return b.scores, b.grad

    def input_gradients(self, mode: AbstractContextManager | None = None, reference: T | None = None) -> T:
        """Gradients of the explained scores at the inputs; the same passes give the logits."""
        return self.gradients(self.inputs, self.owners(), mode=mode, reference=reference)[1]

    # ---- the run's random draws ---------------------------------------------------------------------------------
    def randn(self, *shape: int) -> T:
        return torch.randn(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def rand(self, *shape: int) -> T:
        return torch.rand(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def randint(self, high: int, *shape: int) -> T:
        return torch.randint(high, shape, generator=self.generator, device="cpu").to(self.inputs.device)


def sum_per_row(t: T) -> T:
    return t.flatten(1).sum(1)
