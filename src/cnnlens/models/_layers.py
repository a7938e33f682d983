"""Finding layers in a model by name, by module, as the last convolution executed, or the default layer."""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import torch
from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.core.model_guard import is_scripted
from cnnlens.models._classifier import Classifier
from cnnlens.models._default_layer import DefaultLayer, find_default_layer, probe_last_conv
from cnnlens.models._state import state_fingerprint

# model -> {(kind, input shape, dtype, device): (state fingerprint, what was found)}; weak keys: never keeps a model alive
_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def as_module(model: nn.Module | Classifier) -> nn.Module:
    if isinstance(model, Classifier):
        return model.module
    if isinstance(model, nn.Module):
        return model
    raise CnnlensError(f"Expected an nn.Module or a Classifier; got {type(model).__name__}.")


def layer_names(model: nn.Module | Classifier) -> list[str]:
    """Dotted names of all submodules (not the model itself), in definition order."""
    return [name for name, _ in as_module(model).named_modules() if name]


def get_layer(model: nn.Module | Classifier, name_or_module: str | nn.Module) -> nn.Module:
    """The submodule named ``name_or_module`` (e.g. ``"_blocks.3._depthwise_conv"``).

    A module is returned as is after checking that it belongs to the model.
    """
    root = as_module(model)
    if isinstance(name_or_module, nn.Module):
        if any(m is name_or_module for m in root.modules()):
            return name_or_module
        raise CnnlensError(
            f"The given {type(name_or_module).__name__} module is not part of this model; pass one of its "
            "own submodules or a layer name (see cnnlens.models.layer_names(model))."
        )
    if not isinstance(name_or_module, str):
        raise CnnlensError(f"A layer is given by name (str) or module; got {type(name_or_module).__name__}.")
    if not name_or_module:
        raise CnnlensError("The layer name is empty; pass a dotted name such as '_conv_head'.")
    found = dict(root.named_modules()).get(name_or_module)  # get_submodule refuses ScriptModules; this works on both
    if found is not None:
        return found
    names = layer_names(root)
    close = difflib.get_close_matches(name_or_module, names, n=5, cutoff=0.6)
    if not close:
        close = [n for n in names if name_or_module.lower() in n.lower()][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    if not close and len(names) <= 20:
        hint = f" Its layers: {', '.join(names)}."
    raise CnnlensError(
        f"No layer named {name_or_module!r} in {type(root).__name__}.{hint} "
        "List all layers with cnnlens.models.layer_names(model)."
    )


def last_conv_layer(model: nn.Module | Classifier, input_shape: tuple[int, ...] | None = None) -> str:
    """Dotted name of the last ``nn.Conv2d`` executed whose output is larger than 1x1.

    The model is run once on zeros of ``input_shape`` (default: the classifier's input size,
    else ``(1, 3, 224, 224)``) in eval mode; training flags and hooks are restored afterwards. The answer is kept
    per model state and input shape (see :func:`probed_last_conv`).
    """
    return probed_last_conv(as_module(model), _input_shape(model, input_shape))[0]


def probed_last_conv(root: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, bool]:
    """``(last_conv_layer(root, input_shape), whether the model ran for it)``: the probe runs once per model state
    (its modules, parameters, buffers, hooks and attributes; :func:`~cnnlens.models._state.state_fingerprint`),
    input shape, dtype and device; models with TorchScript inside are probed every time."""
    return _probed(root, input_shape, "last_conv", probe_last_conv)


def default_layer(model: nn.Module | Classifier, input_shape: tuple[int, ...] | None = None) -> str:
    """Dotted name of the default layer of CAM and layer methods: the last spatial layer every path from the input
    to the logits passes through (rule: :mod:`cnnlens.models._default_layer`; e.g. ResNet ``layer4``, VGG and
    DenseNet ``features``, Inception-v3 ``Mixed_7c``).

    The model is traced with ``torch.fx`` and its graph run once on zeros of ``input_shape`` (default: the
    classifier's input size, else ``(1, 3, 224, 224)``) in eval mode; kept per model state and input shape.
    A model that cannot be traced gets the last ``nn.Conv2d`` that ran (:func:`last_conv_layer`). Raises
    ``CnnlensError`` where no layer qualifies (a vision transformer, spatial layers only in parallel branches),
    listing the candidates."""
    root = as_module(model)
    return probed_default_layer(root, _input_shape(model, input_shape))[0].name


def probed_default_layer(root: nn.Module, input_shape: tuple[int, ...]) -> tuple[DefaultLayer, bool]:
    """``(the default layer with why it was chosen, whether the model ran for it)``; cached as
    :func:`probed_last_conv`."""
    return _probed(root, input_shape, "default", find_default_layer)


def _probed(root: nn.Module, input_shape: tuple[int, ...], kind: str, find: Callable) -> tuple[Any, bool]:
    param = next(iter(root.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    key = (kind, tuple(input_shape), dtype, device)
    if is_scripted(root):
        return find(root, input_shape, device, dtype), True
    with suppress(TypeError):  # a model that cannot be weakly referenced is never cached
        seen, found = _FOUND.get(root, {}).get(key, (None, None))
        if found is not None and seen == state_fingerprint(root):
            return found, False
    found = find(root, input_shape, device, dtype)
    with suppress(TypeError):
        _FOUND.setdefault(root, {})[key] = (state_fingerprint(root), found)
    return found, True


def _input_shape(model: nn.Module | Classifier, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return input_shape
    prep = model.preprocessing if isinstance(model, Classifier) else None
    return (1, 3, *prep.input_size) if prep is not None else (1, 3, 224, 224)
