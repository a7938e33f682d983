"""What the contexts of one run share (:class:`Shared`), and how a context batches its model calls
(:class:`Batching`): chunks of at most ``batch_size`` rows, an automatic size that halves when memory runs out,
every evaluated row counted (and shown on the run's progress bar)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.errors import CnnlensError, say
from ..core.progress import checkpoint
from ..models import Cut, cut_at, get_layer
from ._memory import auto_batch_size, is_out_of_memory

T = torch.Tensor


class Rows:
    """Rows made on demand, a slice at a time: ``Rows(n, make)[a:b] == make(slice(a, b))``.

    Lets a method describe thousands of perturbed inputs without holding them all in memory.
    """

    def __init__(self, n: int, make: Callable[[slice], T]) -> None:
        self.shape = (n,)
        self._make = make

    def __getitem__(self, sl: slice) -> T:
        return self._make(sl)


class Shared:
    """What the contexts of one run share: the model, the batching knob, the pass counter, the draws, the cuts,
    and ``cache``: per-run values a method keeps between its contexts (e.g. the model traced for incremental
    inference), by name."""

    def __init__(self, model: nn.Module, batch_size: int | None, generator: torch.Generator) -> None:
        self.model, self.batch_size, self.generator = model, batch_size, generator
        self.passes = 0
        self.rows = {"head": 0, "tail": 0}
        self.cuts: dict[int, Cut] = {}
        self.checked: set[int] = set()  # cuts whose traced layer output was compared with the model's
        self.bar: Any = None  # a progress bar counting passes (set by Method.__call__), or None
        self.cache: dict[str, Any] = {}

    def count(self, rows: int, part: str | None = None) -> None:
        """Add ``rows`` evaluated rows (``part``: ``"head"`` or ``"tail"`` of a cut model)."""
        self.passes += rows
        if part is not None:
            self.rows[part] += rows
        checkpoint(rows)  # a cancellable caller (the app's on-demand computation) may stop the run here
        if self.bar is not None:
            self.bar.update(rows)

    def cut(self, layer: str | nn.Module) -> Cut:
        module = get_layer(self.model, layer)
        if id(module) not in self.cuts:
            self.cuts[id(module)] = cut_at(self.model, module)
        return self.cuts[id(module)]


class Batching:
    """The batched model calls of one context on ``inputs`` (``layer``: they are a layer's output,
    run through the tail of the model); ``auto``: an automatic size already found for inputs like these."""

    def __init__(self, shared: Shared, inputs: T, layer: bool = False, auto: int | None = None) -> None:
        self.shared, self.inputs, self.layer, self.auto = shared, inputs, layer, auto

    def like(self, inputs: T, layer: bool) -> Batching:
        """The batching of other rows (an automatic size found here carries over to rows of the same shape)."""
        same = inputs.shape[1:] == self.inputs.shape[1:]
        return Batching(self.shared, inputs, layer, self.auto if same else None)

    def size(self) -> int:
        """Rows per forward pass: ``batch_size``, or the automatic size."""
        if self.shared.batch_size is not None:
            return self.shared.batch_size
        if self.auto is None:
            self.auto = auto_batch_size(self.shared.model, self.inputs, layer=self.layer)
        return self.auto

    def run(self, fn: Callable[[slice], Any], n_rows: int, rows_per_item: int = 1) -> list:
        """Apply ``fn`` chunk by chunk; on out-of-memory with automatic sizing, halve and retry the chunk."""
        results, start = [], 0
        while start < n_rows:
            size = max(1, self.size() // rows_per_item)
            sl = slice(start, min(n_rows, start + size))
            try:
                results.append(fn(sl))
            except Exception as err:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
                if not is_out_of_memory(err):
                    raise
                if self.shared.batch_size is not None or self.size() <= 1:
                    raise CnnlensError(
                        f"out of memory with {self.size()} model inputs per forward pass; pass a smaller "
                        + say(
                            "batch_size (or batch_size=None to find one automatically)",
                            "--batch-size (or leave it out to find one automatically)",
                        )
                    ) from err
                self.auto = max(1, self.size() // 2)
                continue
            start = sl.stop
        return results
