"""Feature masks: which pixels form one feature (segment) for the perturbation methods.

A mask spec is a regular grid (``"grid:16"`` = 16x16-pixel cells, ``"grid:8x4"`` = cells 8 rows by 4 columns),
a scikit-image superpixel segmentation (``"slic:100"`` ~ 100 segments, ``"quickshift"`` / ``"quickshift:5"``
kernel size, ``"felzenszwalb"`` / ``"felzenszwalb:100"`` scale, ``"watershed:100"`` ~ 100 markers), an integer
tensor ``(H, W)`` shared by all images or ``(B, H, W)`` one per image (a channel axis, of size 1 or expanded
over the channels, is accepted), or a list with one of these per image. Labels of a tensor must be ``0..S-1``
with every label used. A mask is the same for every channel. Superpixels are computed on each image scaled
to [0, 1] by its own range.

Too few superpixels: on noisy or low-texture images (whose own-range scaling turns faint noise into full-range
noise) SLIC's colour distances swamp its compactness, and connectivity enforcement merges everything into one
segment; a method would then attribute the whole image as one feature, a constant map. A segmentation with fewer
than a quarter of the requested segments (``slic:n``, ``watershed:n``; fewer than 2 for quickshift and
felzenszwalb, which take no count) falls back, with a ``CnnlensWarning``: SLIC is run again on the image smoothed
by a Gaussian of sigma 1 pixel (measured on noisy and low-texture shapes: about the requested count, segments that
follow the shapes), and where that is still too few, a regular grid of about the requested number of cells.
``feature_masks(..., notes=[])`` records per image what was used (``None``: the segmentation as asked).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.errors import CnnlensError, CnnlensWarning

T = torch.Tensor
ALGORITHMS = ("grid", "slic", "quickshift", "felzenszwalb", "watershed")
MaskSpec = str | T | Sequence[str | T]


def feature_masks(spec: MaskSpec, inputs: T, notes: list[str | None] | None = None) -> tuple[T, list[int]]:
    """``(labels (B, H, W) long on the inputs' device, segments per image)``; labels are ``0..S_i-1``.

    ``notes``: a list that receives, per image, what replaced a superpixel segmentation with too few segments
    (see the module docstring), else ``None``; a ``CnnlensWarning`` says so once per call."""
    b, _, h, w = inputs.shape
    notes = [] if notes is None else notes
    if isinstance(spec, (list, tuple)):
        if len(spec) != b:
            raise CnnlensError(f"a list of masks needs one per image: got {len(spec)} for {b} images")
        parts = [feature_masks(s, inputs[i : i + 1], notes) for i, s in enumerate(spec)]
        return torch.cat([p[0] for p in parts]), [p[1][0] for p in parts]
    if isinstance(spec, str):
        made = [_from_name(spec, inputs[i]) for i in range(b)]
        said = [note for _, note in made]
        notes.extend(said)
        if any(said):
            first = next(note for note in said if note)
            warnings.warn(
                f"mask {spec!r}: too few segments on {sum(map(bool, said))} of {b} images (noisy or low-texture "
                f"images), e.g. {first}; info['mask_fallback'] lists each image's",
                CnnlensWarning,
                stacklevel=3,
            )
        labels = torch.stack([seg for seg, _ in made])
        return _consecutive(labels.to(inputs.device))
    notes.extend([None] * b)
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return _from_tensor(torch.as_tensor(spec), inputs)
    raise CnnlensError(
        f"mask must be a name ({', '.join(ALGORITHMS)}, e.g. 'grid:16' or 'slic:100'), an integer tensor "
        f"(H, W) or (B, H, W), or a list of those per image; got {type(spec).__name__}"
    )


def _from_tensor(m: T, inputs: T) -> tuple[T, list[int]]:
    b, _, h, w = inputs.shape
    if m.dtype.is_floating_point or m.dtype.is_complex or m.dtype == torch.bool:
        raise CnnlensError(f"a feature mask must be an integer tensor of segment labels; got dtype {m.dtype}")
    shape = tuple(m.shape)
    if m.dim() == 4 and m.shape[1] == inputs.shape[1] > 1:  # a mask expanded over the channels
        if not (m == m[:, :1]).all():
            raise CnnlensError("a feature mask is shared by all channels: give it as (H, W) or (B, H, W)")
        m = m[:, :1]
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if m.dim() == 2:
        m = m.unsqueeze(0).expand(b, -1, -1)
    if m.dim() != 3 or m.shape != (b, h, w):
        raise CnnlensError(
            f"feature mask of shape {shape} does not fit inputs of shape {tuple(inputs.shape)}: give ({h}, {w}) "
            f"shared by all images or ({b}, {h}, {w}) one per image"
        )
    m = m.to(inputs.device).long()
    if (m < 0).any():
        raise CnnlensError("feature mask labels must be >= 0 (segment numbers 0..S-1)")
    counts = []
    for i in range(b):
        used = torch.bincount(m[i].flatten())
        empty = (used == 0).nonzero().flatten()
        if len(empty):
            raise CnnlensError(
                f"feature mask of image {i}: segment {empty[0].item()} is empty (no pixel); labels must be "
                f"0..S-1 with every label used ({len(empty)} of {len(used)} labels unused)"
            )
        counts.append(len(used))
    return m.contiguous(), counts


def _consecutive(labels: T) -> tuple[T, list[int]]:
    out, counts = torch.empty_like(labels), []
    for i in range(labels.shape[0]):
        uniq, inv = torch.unique(labels[i], return_inverse=True)
        out[i] = inv
        counts.append(len(uniq))
    return out, counts


def _parse(spec: str) -> tuple[str, str | None]:
    name, _, arg = spec.partition(":")
    if name not in ALGORITHMS:
        raise CnnlensError(f"unknown mask {spec!r}; use one of {', '.join(ALGORITHMS)} (e.g. 'grid:16', 'slic:100')")
    return name, arg or None


def _number(name: str, arg: str | None, default: float, kind: type = int) -> Any:
    if arg is None:
        return default
    try:
        value = kind(arg)
    except ValueError:
        raise CnnlensError(f"mask '{name}:{arg}': {arg!r} is not a number") from None
    if value <= 0:
        raise CnnlensError(f"mask '{name}:{arg}': the number must be positive")
    return value


def grid(h: int, w: int, cell: tuple[int, int]) -> T:
    """Labels of a regular grid of ``cell`` (rows, columns) pixels, row-major (cells at the border may be cut)."""
    ch, cw = cell
    rows = torch.arange(h) // ch
    cols = torch.arange(w) // cw
    return rows[:, None] * ((w + cw - 1) // cw) + cols[None, :]


def _from_name(spec: str, image: T) -> tuple[T, str | None]:
    """One image's labels for a named mask, and what replaced a superpixel segmentation with too few segments."""
    name, arg = _parse(spec)
    _, h, w = image.shape
    if name == "grid":
        if arg is not None and "x" in arg:
            a, _, c = arg.partition("x")
            cell = (_number(name, a, 16), _number(name, c, 16))
        else:
            size = _number(name, arg, 16)
            cell = (size, size)
        return grid(h, w, cell), None
    pixels = _as_pixels(image)
    wanted = _number(name, arg, 100) if name in ("slic", "watershed") else None
    seg = _superpixels(name, arg, pixels)
    enough = max(2, math.ceil(wanted / 4)) if wanted is not None else 2
    got = _count(seg)
    if got >= enough:
        return torch.from_numpy(np.ascontiguousarray(seg)).long(), None
    said = f"{spec} gave {got} segment{'s' if got != 1 else ''} (fewer than {enough})"
    if name == "slic":
        seg = _slic(pixels, int(wanted or 100), sigma=1.0)
        if _count(seg) >= enough:
            said += f"; SLIC on the image smoothed by a Gaussian (sigma 1 pixel) gave {_count(seg)}"
            return torch.from_numpy(np.ascontiguousarray(seg)).long(), said
    labels = about(h, w, wanted or 50)
    return labels, said + f"; a regular grid of {int(labels.max()) + 1} cells is used instead"


def about(h: int, w: int, n: int) -> T:
    """A regular grid of about ``n`` square cells (side ``ceil(sqrt(h w / n))`` pixels)."""
    side = max(1, math.ceil(math.sqrt(h * w / max(1, n))))
    return grid(h, w, (side, side))


def _count(seg: np.ndarray) -> int:
    return len(np.unique(seg))


def _slic(pixels: np.ndarray, n: int, sigma: float = 0.0) -> np.ndarray:
    from skimage import segmentation

    channel_axis = -1 if pixels.shape[-1] > 1 else None
    data = pixels if channel_axis is not None else pixels[..., 0]
    return segmentation.slic(
        data, n_segments=n, compactness=10.0, sigma=sigma, start_label=0, channel_axis=channel_axis
    )


def _superpixels(name: str, arg: str | None, pixels: np.ndarray) -> np.ndarray:
    """scikit-image's segmentation ``name`` of an (H, W, C) image in [0, 1]."""
    from skimage import segmentation

    channel_axis = -1 if pixels.shape[-1] > 1 else None
    data = pixels if channel_axis is not None else pixels[..., 0]
    if name == "slic":
        return _slic(pixels, _number(name, arg, 100))
    if name == "quickshift":
        if pixels.shape[-1] != 3:
            raise CnnlensError("quickshift segments RGB images only; use slic or felzenszwalb for other channels")
        k = _number(name, arg, 5.0, float)
        return segmentation.quickshift(pixels, kernel_size=k, max_dist=4 * k, ratio=0.5, rng=0)
    if name == "felzenszwalb":
        scale = _number(name, arg, 100.0, float)
        return segmentation.felzenszwalb(data, scale=scale, sigma=0.8, min_size=20, channel_axis=channel_axis)
    from skimage.filters import sobel  # watershed on the gradient magnitude, with about n compact markers

    return segmentation.watershed(sobel(pixels.mean(-1)), markers=_number(name, arg, 100), compactness=0.001)


def _as_pixels(image: T) -> np.ndarray:
    """(H, W, C) float64 in [0, 1]: each image scaled by its own range (segmentation needs no exact colours)."""
    a = image.detach().float().cpu().permute(1, 2, 0).numpy().astype(np.float64)
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def paint(values: T, labels: T, channels: int, spread: bool = False) -> T:
    """``(B, S)`` segment values to ``(B, C, H, W)``: the value at every pixel of its segment, or with
    ``spread`` divided over the segment's pixels and channels (so that the attributions sum to the values)."""
    per_pixel = values.gather(1, labels.flatten(1)).view(labels.shape)
    if spread:
        sizes = torch.stack([torch.bincount(lab.flatten(), minlength=values.shape[1]) for lab in labels])
        per_pixel = per_pixel / (sizes.to(values.dtype) * channels).gather(1, labels.flatten(1)).view(labels.shape)
    return per_pixel.unsqueeze(1).expand(-1, channels, -1, -1).contiguous()
