"""Zennit (LGPL, test-only reference): ``zennit()`` imports the package and the parts the tests use; the helper
below pairs BatchNorms by name for its merging canonizer. Compared against, never copied."""

from __future__ import annotations

from typing import Any

from torch import nn


def zennit() -> Any:
    """The ``zennit`` package (raises ImportError when it is not installed)."""
    import zennit as z
    import zennit.attribution
    import zennit.canonizers
    import zennit.composites
    import zennit.rules

    return z


def merge_batch_norms(model: nn.Module) -> Any:
    """Zennit's canonizer that merges each BatchNorm into the convolution or linear layer registered right before it
    (by name: its sequential canonizer only pairs leaf modules, which misses convolutions with submodules)."""
    from zennit.canonizers import NamedMergeBatchNorm

    pairs, last = [], None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            last = name
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and last is not None:
            pairs.append(((last,), name))
            last = None
    return NamedMergeBatchNorm(pairs)
