"""Helpers shared by the benchmark suites."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from torch import nn


def log(msg: str) -> None:
    """Progress to stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


class RowCounter:
    """Counts model inputs evaluated (rows through the first convolution), whoever runs the model."""

    def __init__(self, model: nn.Module) -> None:
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        self.n = 0
        first.register_forward_pre_hook(self._hook)

    def _hook(self, _module: nn.Module, args: tuple) -> None:
        self.n += int(args[0].shape[0])


def best_of(fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter) -> tuple[float, Any]:
    """(best time, last result) of ``repeats`` timed calls after one warm-up call (``clock``: wall time, or e.g.
    ``time.process_time`` for this process's CPU time)."""
    fn()
    times, out = [], None
    for _ in range(repeats):
        start = clock()
        out = fn()
        times.append(clock() - start)
    return min(times), out
