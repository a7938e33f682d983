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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..core.errors import CnnlensError, say
from ..core.hooks import capture
from ..core.progress import checkpoint
from ..models import Cut, State, cut_at, describe_output, get_layer, probed_last_conv
from ._backward import Differentiation
from ._layer_view import LayerAxis
from ._memory import auto_batch_size, is_out_of_memory
from ._neuron import Neuron

T = torch.Tensor
Target = None | int | list | tuple | T | Callable[[T], T]


class Rows:
    """Rows made on demand, a slice at a time: ``Rows(n, make)[a:b] == make(slice(a, b))``.

    Lets a method describe thousands of perturbed inputs without holding them all in memory.
    """

    def __init__(self, n: int, make: Callable[[slice], T]) -> None:
        self.shape = (n,)
        self._make = make

    def __getitem__(self, sl: slice) -> T:
        return self._make(sl)


class _Shared:
    """What the contexts of one run share: the model, the batching knob, the pass counter, the draws, the cuts."""

    def __init__(self, model: nn.Module, batch_size: int | None, generator: torch.Generator) -> None:
        self.model, self.batch_size, self.generator = model, batch_size, generator
        self.passes = 0
        self.rows = {"head": 0, "tail": 0}
        self.cuts: dict[int, Cut] = {}
        self.checked: set[int] = set()  # cuts whose traced layer output was compared with the model's
        self.bar: Any = None  # a progress bar counting passes (set by Method.__call__), or None

    def cut(self, layer: str | nn.Module) -> Cut:
        module = get_layer(self.model, layer)
        if id(module) not in self.cuts:
            self.cuts[id(module)] = cut_at(self.model, module)
        return self.cuts[id(module)]


class Context(LayerAxis, Differentiation):
    """One explanation run: a frozen model, checked inputs, what is explained, a pass counter and random draws.

    Rows: a method evaluates the model on ``rows`` (e.g. IG path points) each owned by one input image
    (``owner[i]`` is the image row ``i`` belongs to); the target of a row is its owner's target.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: T,
        target: Target = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
        *,
        neuron: Neuron | None = None,
    ) -> None:
        shared = _Shared(model, batch_size, generator if generator is not None else torch.Generator().manual_seed(0))
        if neuron is not None and neuron.layer is None:  # the last convolution, found by a probe pass (kept)
            name, probed = probed_last_conv(model, (1, *inputs.shape[1:]))
            shared.passes += int(probed)
            neuron = Neuron(name, neuron.spec)
        self._setup(shared, inputs, target, neuron)
        if neuron is not None:
            cut = shared.cut(neuron.layer)
            self._check_inner(cut)
            self._explained = lambda rows, owner, state: cut.inner(rows)

    def _setup(self, shared: _Shared, inputs: T, target: Target, neuron: Neuron | None) -> None:
        self.shared = shared
        self.inputs = inputs
        self.neuron = neuron
        self.layer: str | None = None
        """Where these inputs are: ``None`` for the model's inputs, else the layer whose activations they are."""
        self.state: State | None = None
        self._parent: Context | None = None  # the context on the model's inputs a layer view was made from
        self._target_spec = target
        self._targets: T | None = None  # (B,) long, or None with a callable target
        self._logits: T | None = None
        self._values: T | None = None  # the neuron's value for each input
        self._auto: int | None = None
        self.info: dict = {}  # method-specific diagnostics, copied to Explanation.info
        self._network: Callable[[T, T, State | None], Any] = lambda rows, owner, state: shared.model(rows)
        self._explained: Callable[[T, T, State | None], Any] | None = None  # None: the network's logits

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
        self._count(rows)

    @property
    def bar(self) -> Any:
        """The run's progress bar of passes (set by ``Method.__call__``), or ``None``."""
        return self.shared.bar

    @bar.setter
    def bar(self, bar: Any) -> None:
        self.shared.bar = bar

    # ---- the model's own view of the inputs -------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.inputs.shape[0]

    def owners(self, repeat: int = 1) -> T:
        """Owner index of ``repeat`` consecutive copies of every input row: [0,0,..,1,1,..]."""
        return torch.arange(self.n, device=self.inputs.device).repeat_interleave(repeat)

    @property
    def logits(self) -> T:
        """Logits of the inputs (one forward pass per image, computed once)."""
        if self._logits is None:
            parts = self.run(lambda sl: self._model_logits(self.inputs[sl], self.owners()[sl]), self.n)
            self._logits = torch.cat(parts)
        return self._logits

    def _model_logits(self, rows: T, owner: T, state: State | None = None) -> T:
        with torch.no_grad():
            out = self._network(rows, owner, state)
        self._count(rows.shape[0])
        return self._check_logits(out, rows.shape[0])

    def target_scores(self) -> T:
        """f(x): the explained score of each input (from the logits pass for class scores); resolves the targets
        on these logits, so that rows scored later (perturbed, ablated) are scored for the same classes."""
        if self.neuron is not None:
            if self._values is None:
                self._values = self.scores(self.inputs, self.owners())
            return self._values
        _ = self.targets
        return self.select(self.logits, self.owners())

    @property
    def targets(self) -> T | None:
        """One class index per image (``None`` when the target is a callable)."""
        if self._targets is None and not callable(self._target_spec):
            self._targets = self._resolve_targets(self.logits)
        return self._targets

    def _resolve_targets(self, logits: T) -> T:
        spec, k = self._target_spec, logits.shape[1]
        if spec is None:
            return logits.argmax(1)
        t = torch.as_tensor(spec, device=logits.device)
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() > 1:
            raise CnnlensError(f"target must be an int, one int per image, or a callable; got {spec!r}")
        t = t.long().expand(self.n) if t.dim() == 0 else t.long()
        if t.numel() != self.n:
            raise CnnlensError(f"target has {t.numel()} entries but there are {self.n} images; give one per image")
        bad = (t < 0) | (t >= k)
        if bad.any():
            raise CnnlensError(f"target {t[bad].tolist()} out of range: the model has {k} classes (0..{k - 1})")
        return t

    def select(self, logits: T, owner: T) -> T:
        """The class score each row is explained for: its owner's target logit, or the callable's value."""
        if callable(self._target_spec):
            s = self._target_spec(logits)
            if not isinstance(s, torch.Tensor) or s.shape != (logits.shape[0],):
                raise CnnlensError(
                    f"a callable target must map logits of shape {tuple(logits.shape)} to one score per "
                    f"row, shape ({logits.shape[0]},); it returned {getattr(s, 'shape', type(s))}"
                )
            return s
        if self._targets is None:
            if self._target_spec is None:  # only on the recording pass, where every row is its own image
                return logits.max(1).values
            self._targets = self._resolve_targets(logits)
        return logits.gather(1, self._targets[owner][:, None])[:, 0]

    # ---- contexts derived from this one --------------------------------------------------------------------------
    def _child(self, inputs: T) -> Context:
        child = Context.__new__(Context)
        child._setup(self.shared, inputs, self._target_spec, self.neuron)
        child._network, child._explained = self._network, self._explained
        child._auto = self._auto if inputs.shape[1:] == self.inputs.shape[1:] else None
        return child

    def derive(self, inputs: T, repeat: int) -> Context:
        """The context of ``repeat`` consecutive rows per image (e.g. noisy copies): the same model, explained
        score (targets repeated) and batching; its passes count for this run."""
        if inputs.shape[0] != self.n * repeat:
            raise CnnlensError(f"derive: {inputs.shape[0]} rows given for {self.n} images x {repeat}")
        child = self._child(inputs)
        child.layer, child._parent = self.layer, self._parent
        if self.neuron is None and not callable(self._target_spec):
            child._targets = self.targets.repeat_interleave(repeat)  # type: ignore[union-attr]
            child._target_spec = child._targets
        if self.state is not None:
            child.state = self.state.take(self.owners(repeat))
        return child

    # ---- batched model calls ------------------------------------------------------------------------------
    def _count(self, rows: int, part: str | None = None) -> None:
        self.shared.passes += rows
        if part is not None:
            self.shared.rows[part] += rows
        checkpoint(rows)  # a cancellable caller (the app's on-demand computation) may stop the run here
        if self.shared.bar is not None:
            self.shared.bar.update(rows)

    def _check_logits(self, out: Any, n: int) -> T:
        if not isinstance(out, torch.Tensor):
            raise CnnlensError(
                f"the model returned a {type(out).__name__}, not a tensor of logits. Wrap it so that it returns "
                f"the (batch, classes) logits with cnnlens.models.SelectOutput: {describe_output(out)}"
            )
        if out.dim() != 2 or out.shape[0] != n:
            raise CnnlensError(f"the model returned shape {tuple(out.shape)} for {n} inputs; expected (batch, classes)")
        if not torch.isfinite(out).all():
            raise CnnlensError("the model returned NaN or infinite logits for these inputs; check the inputs")
        return out

    def evaluate(self, rows: T, owner: T, state: State | None = None) -> tuple[T, T]:
        """``(output, explained scores)`` of one chunk of rows, under the caller's gradient mode: the output is
        the model's logits (for a neuron: the neuron's layer output). ``state``: a layer view's rows with their own
        values for what crosses the layer (default: their owners')."""
        out = self._output(rows, owner, state)
        return out, self._score(out, owner)

    def _output(self, rows: T, owner: T, state: State | None = None) -> Any:
        """The model's logits of one chunk of rows (for a neuron: its layer's output), counted."""
        n = rows.shape[0]
        if self._explained is not None:
            out = self._explained(rows, owner, state)
        else:
            out = self._check_logits(self._network(rows, owner, state), n)
        self._count(n)
        return out

    def _score(self, out: Any, owner: T) -> T:
        """The explained score of each row from ``_output``'s result."""
        return self.neuron(out) if self._explained is not None else self.select(out, owner)  # type: ignore[misc]

    def _size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        if self._auto is None:
            self._auto = auto_batch_size(self.model, self.inputs, layer=self.layer is not None)
        return self._auto

    def run(self, fn: Callable[[slice], Any], n_rows: int, rows_per_item: int = 1) -> list:
        """Apply ``fn`` chunk by chunk; on out-of-memory with automatic sizing, halve and retry the chunk."""
        results, start = [], 0
        while start < n_rows:
            size = max(1, self._size() // rows_per_item)
            sl = slice(start, min(n_rows, start + size))
            try:
                results.append(fn(sl))
            except Exception as err:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
                if not is_out_of_memory(err):
                    raise
                if self.batch_size is not None or self._size() <= 1:
                    raise CnnlensError(
                        f"out of memory with {self._size()} model inputs per forward pass; pass a smaller "
                        + say(
                            "batch_size (or batch_size=None to find one automatically)",
                            "--batch-size (or leave it out to find one automatically)",
                        )
                    ) from err
                self._auto = max(1, self._size() // 2)
                continue
            start = sl.stop
        return results

    def _recording(self, x: Any) -> bool:
        """Rows that are the inputs themselves give the logits for free (class scores only)."""
        return x is self.inputs and self._logits is None and self._explained is None

    def scores(self, x: T | Rows, owner: T, state: State | None = None) -> T:
        """Explained scores of every row, without gradients."""
        record = self._recording(x)
        if not record:
            _ = self.targets if self.neuron is None else None

        def step(sl: slice) -> tuple[T, T]:
            with torch.no_grad():
                return self.evaluate(x[sl], owner[sl], None if state is None else state[sl])

        parts = self.run(step, x.shape[0])
        if record:
            self._logits = torch.cat([p[0] for p in parts])
        return torch.cat([p[1] for p in parts])

    def layer_outputs(self, layers: Sequence[nn.Module], inputs: bool = False) -> list[T]:
        """Outputs (or inputs) of ``layers`` for the inputs, without gradients; the same passes give the logits."""
        record = self._recording(self.inputs)

        def step(sl: slice) -> tuple[T, list[T]]:
            with torch.no_grad(), capture(layers, inputs=inputs) as outs:
                out, _ = self.evaluate(self.inputs[sl], self.owners()[sl])
            return out, outs

        parts = self.run(step, self.n)
        if record:
            self._logits = torch.cat([p[0] for p in parts])
        return [torch.cat([p[1][i] for p in parts]) for i in range(len(layers))]

    def randn(self, *shape: int) -> T:
        return torch.randn(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def rand(self, *shape: int) -> T:
        return torch.rand(*shape, generator=self.generator, device="cpu").to(self.inputs)

    def randint(self, high: int, *shape: int) -> T:
        return torch.randint(high, shape, generator=self.generator, device="cpu").to(self.inputs.device)


def sum_per_row(t: T) -> T:
    return t.flatten(1).sum(1)
