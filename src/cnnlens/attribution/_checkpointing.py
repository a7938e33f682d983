"""Gradient checkpointing while a method runs: switched off where the model says how, refused clearly otherwise.

Checkpointing (``torch.utils.checkpoint``) is a memory trick, not a different function: a checkpointed block keeps
only its inputs in the forward pass and runs its forward code again during the backward pass. That second run
happens outside the forward hooks and the backward rules a method sets up for the forward pass (DeepLIFT, LRP,
guided backprop, the captured layer of a CAM), so it computes other tensors than the first: torch raises
``CheckpointError``, or a CAM finds its layer's output computed without gradients. The same model without
checkpointing computes the same function, so methods run with it off:

* timm models (``model.set_grad_checkpointing()``): the ``grad_checkpointing`` flag of every module;
* torchvision DenseNets (``memory_efficient=True``): the ``memory_efficient`` flag of every dense layer;
* Hugging Face models (``gradient_checkpointing_enable()``): the ``gradient_checkpointing`` flag of every module.

Only flags that are ``True`` are set to ``False``, and they are put back afterwards, also on error. A model that
checkpoints in its own way (``torch.utils.checkpoint`` called in its forward code) gets a ``CnnlensError`` naming
the cause and what to do, in place of torch's ``CheckpointError`` (or its refusal of ``torch.autograd.grad`` through
a reentrant checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.utils.checkpoint import CheckpointError

from ..core.errors import CnnlensError

FLAGS = ("grad_checkpointing", "memory_efficient", "gradient_checkpointing")
"""The attributes through which timm, torchvision and Hugging Face models switch checkpointing on."""


@contextmanager
def checkpointing_off(model: nn.Module) -> Iterator[list[str]]:
    """Inside: every checkpointing flag of ``model``'s modules (``FLAGS``) that is ``True`` set to ``False``; yields
    ``"module.flag"`` for each one switched off (``"flag"`` for the root). Afterwards, also on error: as before.

    A ``CheckpointError`` raised inside, or torch's refusal of a reentrant checkpoint (checkpointing the flags do not
    cover), becomes a ``CnnlensError``; any other error propagates unchanged."""
    switched: list[tuple[nn.Module, str, str]] = []
    try:
        for name, m in model.named_modules():
            own = vars(m)
            for flag in FLAGS:
                if own.get(flag) is True:
                    own[flag] = False
                    switched.append((m, flag, f"{name}.{flag}" if name else flag))
        yield [label for _, _, label in switched]
    except (CheckpointError, RuntimeError) as err:
        if not isinstance(err, CheckpointError) and "torch.utils.checkpoint" not in str(err):
            raise
        raise CnnlensError(
            "the model uses gradient checkpointing (torch.utils.checkpoint), which runs a block's forward code again "
            "during the backward pass, outside the hooks and rules this method sets up for the forward pass; torch "
            f"refused or found the second run different ({str(err).strip().splitlines()[0][:160]}). Checkpointing "
            "saves memory and does not change what the model computes: explain the model with it switched off (e.g. "
            "a flag in its forward code); cnnlens does that itself for timm's set_grad_checkpointing(), "
            "torchvision's memory_efficient=True and Hugging Face's gradient_checkpointing_enable()"
        ) from err
    finally:
        for m, flag, _ in switched:
            vars(m)[flag] = True
