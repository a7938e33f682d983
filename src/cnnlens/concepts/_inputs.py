"""What concept methods start from: the images of one class as model input, and the layer they look at.

The layer must have non-negative outputs (NMF factorizes non-negative matrices; TCAV does not care). The default
is the last layer before global pooling: the last module that runs once and outputs a spatial map. A layer whose
output can be negative is accepted when the model ignores the negative part (``tail(relu(a)) == tail(a)``, e.g.
a BatchNorm followed by ReLU6 as in EfficientNet-Lite); its output is then rectified before it is factorized.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.errors import CnnlensError, CnnlensWarning, say
from ..core.hooks import module_calls
from ..core.model_guard import frozen, model_device
from ..models import Classifier, cut_at, get_layer
from ..models import as_module as _as_module

T = torch.Tensor


def class_index(model: Any, class_: int | str, data: Any = None) -> tuple[int, str]:
    """``(index, name)`` of ``class_`` (an output index or a class name of the model or the dataset)."""
    names = getattr(model, "class_names", None) or getattr(data, "classes", None)
    names = list(names) if names is not None else None
    if isinstance(class_, (int, np.integer)) and not isinstance(class_, bool):
        i = int(class_)
        if i < 0 or (names is not None and i >= len(names)):
            raise CnnlensError(f"class index {i} is out of range; the model has {len(names or [])} classes.")
        return i, names[i] if names is not None else str(i)
    if isinstance(class_, str):
        if names is not None and class_ in names:
            return names.index(class_), class_
        if class_.isdigit() and (names is None or int(class_) < len(names)):
            i = int(class_)
            return i, names[i] if names is not None else class_
        shown = ", ".join(names[:20]) + (" ..." if names and len(names) > 20 else "") if names else "none"
        raise CnnlensError(f"unknown class {class_!r}; give a class name or an output index (class names: {shown}).")
    raise CnnlensError(f"a class is given by name (str) or output index (int); got {type(class_).__name__}.")


def as_batch(model: Any, images: Any) -> T:
    """Model input ``(N, C, H, W)`` from a tensor or images (images need a ``Classifier`` with preprocessing)."""
    if isinstance(images, torch.Tensor):
        x = images.unsqueeze(0) if images.ndim == 3 else images
        if x.ndim != 4 or not x.is_floating_point():
            raise CnnlensError(
                f"expected a (N, C, H, W) float tensor of model input; got {x.dtype} of shape {tuple(x.shape)}."
            )
        return x.to(model_device(_as_module(model)) or "cpu")
    if isinstance(model, Classifier):
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] not in (3, 4):
            images = list(images)  # (N, H, W) grayscale arrays
        return model.preprocess(images)
    raise CnnlensError("images need preprocessing: pass a Classifier (cnnlens.load_model) or a tensor of inputs.")


def class_images(model: Any, data: Any, index: int, limit: int, seed: int) -> tuple[T, list[str]]:
    """Model input for the images of class ``index`` in ``data`` (at most ``limit``, drawn under ``seed``), ids.

    ``data``: a dataset (``len``, ``data[i] -> (image, label)``, e.g. ``digits("test")``, ``ImageFolder``) whose
    samples of the class are used; or images/a tensor that all show the class.
    """
    labels = _labels(data)
    if labels is None:
        x = as_batch(model, data)
        ids = [f"image {i}" for i in range(len(x))]
    else:
        chosen = np.flatnonzero(labels == index)
        if len(chosen) == 0:
            present = sorted({int(v) for v in labels})
            names = getattr(data, "classes", None)
            shown = [names[i] if names is not None and i < len(names) else str(i) for i in present]
            raise CnnlensError(
                f"the data has no images of class {index} ({_name(model, data, index)}); classes present: "
                f"{', '.join(shown[:20])}. Pass {say('class_=', '--class')} one of them, or data that holds the class."
            )
        if len(chosen) > limit:
            chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=limit, replace=False))
        all_ids = getattr(data, "ids", None)
        ids = [str(all_ids[int(i)]) if all_ids is not None else f"sample {int(i)}" for i in chosen]
        items, ids = _readable(data, chosen, ids, _name(model, data, index))
        x = torch.stack([as_batch(model, it)[0] for it in items]) if isinstance(items[0], T) else as_batch(model, items)
    if len(x) > limit:
        x, ids = x[:limit], ids[:limit]
    return x, ids


def _readable(data: Any, chosen: np.ndarray, ids: list[str], class_name: str) -> tuple[list[Any], list[str]]:
    """The images of samples ``chosen`` that can be read, and their ids. An unreadable one (a ``CnnlensError`` from
    the data set) stops with its id, or is skipped with a ``CnnlensWarning`` naming it when the data set was opened
    with ``on_error="report"`` (``--on-error report``)."""
    items, kept, skipped = [], [], []
    for i, sample_id in zip(chosen, ids, strict=True):
        try:
            items.append(data[int(i)][0])
        except CnnlensError as e:
            if getattr(data, "on_error", "raise") != "report":
                fix = say("open the data with on_error='report' to skip it", "pass --on-error report to skip it")
                raise CnnlensError(f"sample {sample_id!r} cannot be read: {e} (remove it, or {fix})") from e
            skipped.append(sample_id)
            continue
        kept.append(sample_id)
    if skipped:
        warnings.warn(
            f"concepts of class {class_name}: skipped {len(skipped)} unreadable sample(s): "
            f"{'; '.join(skipped[:10])}{' ...' if len(skipped) > 10 else ''}",
            CnnlensWarning,
            stacklevel=3,
        )
    if not items:
        raise CnnlensError(f"none of the {len(ids)} images of class {class_name} drawn for concepts can be read.")
    return items, kept


def _labels(data: Any) -> np.ndarray | None:
    if isinstance(data, (torch.Tensor, np.ndarray, list, tuple, str)) or not hasattr(data, "__getitem__"):
        return None
    labels = getattr(data, "labels", None)
    if labels is None:
        labels = [data[i][1] for i in range(len(data))]
    return np.asarray(labels, dtype=np.int64)


def _name(model: Any, data: Any, index: int) -> str:
    names = getattr(model, "class_names", None) or getattr(data, "classes", None)
    return names[index] if names is not None and index < len(names) else str(index)


@dataclass(frozen=True)
class ConceptLayer:
    """The layer concepts live in: its dotted ``name`` and whether its output is ``rectified`` before use."""

    name: str
    rectified: bool


def spatial_layers(module: nn.Module, x: T) -> list[tuple[str, float]]:
    """``(name, smallest output value)`` of the modules that run once and output a spatial map, in run order."""
    named = [(n, m) for n, m in module.named_modules() if n and not isinstance(m, torch.jit.ScriptModule)]
    with module_calls(named, keep=_lowest) as calls, frozen(module), torch.no_grad():
        module(x)
    runs: dict[str, list[float]] = {}  # in the order of each module's first call
    for call in calls:
        runs.setdefault(call.name, []).append(call.output)
    return [(n, lows[0]) for n, lows in runs.items() if len(lows) == 1 and not np.isnan(lows[0])]


def _lowest(out: Any) -> float:
    """The smallest value of a spatial map ``out`` (NaN for any other output)."""
    ok = isinstance(out, T) and out.ndim == 4 and out.shape[2] * out.shape[3] > 1
    return float(out.min()) if ok else float("nan")


def choose_layer(model: Any, x: T, layer: str | None) -> ConceptLayer:
    """The layer to use (``layer``, or the default), checked on inputs ``x``; see the module docstring."""
    module = _as_module(model)
    candidates = spatial_layers(module, x[:8])
    if not candidates:
        raise CnnlensError("the model has no layer with a spatial output that runs once; concepts need one.")
    if layer is None:
        for name, low in reversed(candidates[-4:]):
            if low >= 0 or _ignores_negative(module, name, x[:8]):
                return ConceptLayer(name, low < 0)
        raise CnnlensError(
            f"the last layers before pooling ({', '.join(n for n, _ in candidates[-4:])}) have negative outputs "
            f"that the model uses; pass {say('layer=', '--layer')} a layer right after a ReLU."
        )
    get_layer(module, layer)  # a clear error for an unknown name
    lows = dict(candidates)
    if layer not in lows:
        raise CnnlensError(
            f"layer {layer} does not output one spatial map per image in one run; choose one of: "
            f"{', '.join(n for n, _ in candidates[-8:])}."
        )
    if lows[layer] >= 0 or _ignores_negative(module, layer, x[:8]):
        return ConceptLayer(layer, lows[layer] < 0)
    good = [n for n, low in candidates if low >= 0]
    hint = f" such as {good[-1]} (the last one with non-negative outputs)" if good else " right after a ReLU"
    raise CnnlensError(
        f"layer {layer} has negative outputs (min {lows[layer]:.3g}) that the model uses; concepts factorize "
        f"non-negative activations: pass {say('layer=', '--layer')} a layer{hint}."
    )


def _ignores_negative(module: nn.Module, name: str, x: T) -> bool:
    """Whether the model's output stays the same when the layer's negative outputs become 0."""
    cut = cut_at(module, name)
    with frozen(module), torch.no_grad():
        a, state = cut.head(x)
        out, rect = cut.tail(a, state), cut.tail(a.clamp(min=0), state)
    if not isinstance(out, T):
        return False
    return bool(torch.allclose(out, rect, rtol=1e-4, atol=1e-4 * float(out.abs().max().clamp(min=1))))
