"""A warning when a CAM's layer map carries nothing: all zero because the layer outputs zeros, because the score's
gradient at the layer is zero, or because the channel-weighted sum is zero everywhere."""

from __future__ import annotations

import warnings

import torch

from ...core.errors import CnnlensWarning

T = torch.Tensor

_WHAT_TO_DO = (
    "choose a layer the score depends on entirely (leave layer= out for the default: the last spatial layer every "
    "path to the score passes through), or check the model's weights (random or untrained weights give such maps)"
)


class DegenerateMapWarning(CnnlensWarning):
    """A CAM's map is zero everywhere for some image, for the reason the message gives (the layer's output is zero,
    the score's gradient at the layer is zero, or the weighted channels cancel); the map says nothing there."""


def warn_degenerate(method: str, layer: str, acts: T, grads: T | None, raw: T) -> None:
    """Warn once when the layer map ``raw`` ``(B, 1, h, w)`` (before the ReLU) is zero everywhere for an image,
    naming the cause found in the layer's activations ``acts`` and gradients ``grads`` ``(B, K, h, w)``.

    A map that only the method's ReLU empties (negative everywhere: nothing at the layer speaks for the class,
    common for a class the model does not predict) is an answer, not a failure, and is not warned about."""
    flat = raw.detach().flatten(1)
    dead = ~(flat != 0).any(1)
    if not bool(dead.any()):
        return
    images = [int(i) for i in torch.nonzero(dead)[:, 0]][:5]
    which = f"image{'s' if len(images) > 1 else ''} {', '.join(map(str, images))}"
    zero_acts = ~(acts.detach()[dead].flatten(1) != 0).any(1)
    zero_grads = None if grads is None else ~(grads.detach()[dead].flatten(1) != 0).any(1)
    if bool(zero_acts.all()):
        cause = f"layer {layer!r} outputs zeros in all {acts.shape[1]} channels"
    elif zero_grads is not None and bool(zero_grads.all()):
        cause = (
            f"the score's gradient at layer {layer!r} is zero: the score does not depend on this layer's output "
            f"here (e.g. a zero-initialised BatchNorm after it ends a residual branch, as in timm's zero_init_last "
            f"blocks, or every unit after it is inactive)"
        )
    else:
        cause = f"the channel weights of {method} cancel or vanish at layer {layer!r}"
    warnings.warn(
        f"{method}: the map of {which} is zero everywhere, because {cause}; it shows nothing. {_WHAT_TO_DO}",
        DegenerateMapWarning,
        stacklevel=2,
    )
