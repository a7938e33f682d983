"""Baselines (references) in the model's input space, respecting its normalization."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.errors import CnnlensError, say

if TYPE_CHECKING:
    from ..models import Preprocessing
    from ._masks import MaskSpec

T = torch.Tensor
BaselineSpec = None | float | int | str | T | Sequence[None | float | int | str | T]

_COLOURS = {"black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0)}
BASELINE_NAMES = ("zero", "black", "white", "mean", "blur", "noise")


def _pixel(preprocessing: Preprocessing | None, name: str, inputs: T) -> T:
    if preprocessing is None:
        raise CnnlensError(
            f"baseline={name!r} needs the model's normalization (mean/std) to know what a {name} pixel is; "
            f"pass a cnnlens Classifier (cnnlens.load_model) or give the baseline as a tensor"
        )
    rgb = preprocessing.mean if name == "mean" else _COLOURS[name]
    value = preprocessing.pixel_value(rgb).to(device=inputs.device, dtype=inputs.dtype)
    return value.view(1, -1, 1, 1).expand_as(inputs)


def _blur(inputs: T, sigma: float = 10.0) -> T:
    radius = int(3 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=inputs.dtype, device=inputs.device) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(inputs.shape[1], 1, 1, 1)
    c = inputs.shape[1]
    x = torch.nn.functional.pad(inputs, (radius, radius, 0, 0), mode="replicate")
    x = torch.nn.functional.conv2d(x, k, groups=c)
    x = torch.nn.functional.pad(x, (0, 0, radius, radius), mode="replicate")
    return torch.nn.functional.conv2d(x, k.transpose(2, 3), groups=c)


_DRAWS: ContextVar[torch.Generator | None] = ContextVar("cnnlens_baseline_draws", default=None)


@contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Inside the block, ``baseline="noise"`` draws from ``generator`` (a run's generator, seeded with its
    ``seed=``) instead of a generator seeded with 0."""
    token = _DRAWS.set(generator)
    try:
        yield
    finally:
        _DRAWS.reset(token)


def _noise(inputs: T, preprocessing: Preprocessing | None) -> T:
    """Uniform random pixel colours (normalized as the model expects), or N(0, 1) without a normalization.

    Drawn from the run's generator inside `drawing_from` (methods and metrics: seeded with ``seed=``), else from a
    generator seeded with 0, so the same inputs and seed always get the same noise."""
    g = _DRAWS.get()
    g = g if g is not None else torch.Generator().manual_seed(0)
    if preprocessing is None:
        return torch.randn(inputs.shape, generator=g).to(inputs)
    return preprocessing.normalize(torch.rand(inputs.shape, generator=g)).to(inputs)


def inpaint_baseline(inputs: T, mask: MaskSpec = "grid:16") -> T:
    """Each segment of ``mask`` filled by biharmonic inpainting (scikit-image) from the rest of its image.

    The result is a baseline tensor ``(B, C, H, W)`` for the perturbation methods, used with the same mask:
    removing a segment then shows what the surrounding image suggests was there instead of a flat colour.
    """
    from skimage.restoration import inpaint_biharmonic

    from ._masks import feature_masks

    labels, counts = feature_masks(mask, inputs)
    out = torch.empty_like(inputs)
    for i in range(inputs.shape[0]):
        image = inputs[i].detach().cpu().double().permute(1, 2, 0).numpy()
        lab = labels[i].cpu().numpy()
        filled = np.empty_like(image)
        for s in range(counts[i]):
            hole = lab == s
            if hole.all():
                filled[hole] = image.mean((0, 1))
                continue
            filled[hole] = inpaint_biharmonic(image, hole, channel_axis=-1)[hole]
        out[i] = torch.from_numpy(filled).permute(2, 0, 1).to(out)
    return out


def single_baseline(spec: BaselineSpec, inputs: T, preprocessing: Preprocessing | None = None) -> T:
    """One baseline per input, shape ``inputs.shape``."""
    if spec is None or (isinstance(spec, str) and spec == "zero"):
        return torch.zeros_like(inputs)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(inputs, float(spec))
    if isinstance(spec, str):
        if spec in ("black", "white", "mean"):
            return _pixel(preprocessing, spec, inputs).clone()
        if spec == "blur":
            return _blur(inputs)
        if spec == "noise":
            return _noise(inputs, preprocessing)
        if spec == "inpaint":
            raise CnnlensError(
                "baseline 'inpaint' depends on a feature mask: "
                + say(
                    "pass baseline=inpaint_baseline(inputs, mask), one inpainted image per input (from "
                    "cnnlens.attribution.perturbation; methods that take a baseline distribution: "
                    "inpaint_baseline(inputs, mask)[:, None])",
                    "it works with the perturbation methods (feature_ablation, region_occlusion, kernel_shap, ...), "
                    "which fill the segments of their own mask",
                )
            )
        raise CnnlensError(f"unknown baseline {spec!r}; use one of {', '.join(BASELINE_NAMES)}, a number or a tensor")
    if isinstance(spec, torch.Tensor):
        b = spec.to(device=inputs.device, dtype=inputs.dtype)
        if b.dim() == inputs.dim() - 1:
            b = b.unsqueeze(0)
        try:
            return b.expand_as(inputs).clone()
        except RuntimeError:
            raise CnnlensError(
                f"baseline of shape {tuple(spec.shape)} does not fit inputs of shape {tuple(inputs.shape)}; "
                f"give (C, H, W), (1, C, H, W) or one per input (B, C, H, W)"
            ) from None
    raise CnnlensError(
        f"baseline must be None, a number, a name ({', '.join(BASELINE_NAMES)}) or a tensor; got {spec!r}"
    )


def baseline_distribution(spec: BaselineSpec, inputs: T, preprocessing: Preprocessing | None = None) -> T:
    """K baselines for every input, shape ``(B, K, C, H, W)``.

    A tensor ``(K, C, H, W)`` is shared by all inputs (e.g. a few dataset images), ``(B, K, C, H, W)`` gives
    each input its own; a list mixes names, numbers and tensors, each one baseline. Anything accepted by ``single_baseline`` gives K = 1.
    """
    if isinstance(spec, torch.Tensor) and spec.dim() in (inputs.dim(), inputs.dim() + 1):
        b = spec.to(device=inputs.device, dtype=inputs.dtype)
        if b.dim() == inputs.dim():
            b = b.unsqueeze(0).expand(inputs.shape[0], *b.shape)
        if b.shape[0] != inputs.shape[0] or b.shape[2:] != inputs.shape[1:]:
            raise CnnlensError(
                f"baseline distribution of shape {tuple(spec.shape)} does not fit inputs of shape "
                f"{tuple(inputs.shape)}: give (K, {', '.join(map(str, inputs.shape[1:]))}) shared by all inputs "
                f"or (B, K, ...) per input"
            )
        return b.clone()
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise CnnlensError("the baseline list is empty; give at least one baseline")
        return torch.stack([single_baseline(s, inputs, preprocessing) for s in spec], dim=1)
    return single_baseline(spec, inputs, preprocessing).unsqueeze(1)
