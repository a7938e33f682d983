"""Zennit (LGPL, test-only reference) imported beside our CPU torch.

Zennit 0.5.1 imports ``torchvision.models.resnet`` in its ``__init__``, only for its torchvision-model
canonizers, and torchvision does not load beside the CPU torch build used here. A minimal stand-in module that
defines the two names Zennit imports is put in ``sys.modules`` first; the canonizers that would use them are never
called. ``zennit()`` returns the imported package (the tests skip when it is not installed).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from torch import nn


def _stand_in() -> None:
    if "torchvision" in sys.modules:
        return
    names = ("torchvision", "torchvision.models", "torchvision.models.resnet")
    mods = {n: types.ModuleType(n) for n in names}
    resnet = mods["torchvision.models.resnet"]
    resnet.BasicBlock = type("BasicBlock", (nn.Module,), {})  # type: ignore[attr-defined]
    resnet.Bottleneck = type("Bottleneck", (nn.Module,), {})  # type: ignore[attr-defined]
    mods["torchvision"].models = mods["torchvision.models"]  # type: ignore[attr-defined]
    mods["torchvision.models"].resnet = resnet  # type: ignore[attr-defined]
    sys.modules.update(mods)


def zennit() -> Any:
    """The ``zennit`` package (raises ImportError when it is not installed)."""
    _stand_in()
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
