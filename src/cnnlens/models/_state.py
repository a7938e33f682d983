"""A fingerprint of what a model's forward pass depends on, for caches of things found by running or tracing it."""

from __future__ import annotations

from torch import nn


def state_fingerprint(model: nn.Module, watched: set[int] | None = None) -> tuple:
    """A value that changes when the model's forward may: which modules sit where, every parameter and buffer
    (which tensor, its in-place version, storage, dtype, shape), and, for the modules in ``watched`` (ids; None:
    all), their hooks and attributes (which objects: an attribute rebound to another value is seen, a list
    changed in place is not). Global forward hooks count too."""
    from torch.nn.modules import module as registry

    out: list = [len(registry._global_forward_hooks), len(registry._global_forward_pre_hooks)]
    for n, m in model.named_modules(remove_duplicate=False):
        out.append((n, id(m), type(m)))
        if watched is None or id(m) in watched:
            out.append((len(m._forward_hooks), len(m._forward_pre_hooks)))
            out.extend((k, id(v)) for k, v in vars(m).items() if k != "training")  # traced in eval mode
    for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        out.append((n, id(t), t._version, t.data_ptr(), t.dtype, t.device, tuple(t.shape)))
    return tuple(out)
