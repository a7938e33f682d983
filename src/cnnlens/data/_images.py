"""Decoding images from files, PIL images and arrays into RGB PIL images; bundled sample images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlens._errors import CnnlensError

SAMPLE_IMAGES: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket")

_WHITE = (255, 255, 255, 255)


def load_image(x: str | os.PathLike[str] | Image.Image | np.ndarray) -> Image.Image:
    """Return ``x`` (a file path, PIL image or NumPy array) as an RGB PIL image.

    Transparent images are composited on white; 16-bit images are scaled to 8 bit;
    float arrays must hold values in [0, 1].
    """
    if isinstance(x, (str, os.PathLike)):
        return _from_path(Path(x))
    if isinstance(x, Image.Image):
        return _to_rgb(x)
    if isinstance(x, np.ndarray):
        return _from_array(x)
    raise CnnlensError(
        f"Cannot read an image from a {type(x).__name__}. Pass a file path, a PIL image "
        "or a NumPy array of shape (H, W), (H, W, 3) or (H, W, 4)."
    )


def _from_path(path: Path) -> Image.Image:
    if not path.exists():
        raise CnnlensError(f"Image file not found: {str(path)!r}. Check the path and try again.")
    if path.is_dir():
        raise CnnlensError(f"{str(path)!r} is a directory; pass the path of an image file.")
    try:
        with Image.open(path) as im:
            im.load()
            rgb = _to_rgb(ImageOps.exif_transpose(im))
            return rgb.copy() if rgb is im else rgb
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise CnnlensError(
            f"Could not decode the image file {str(path)!r} ({type(e).__name__}: {e}). "
            "The file may be truncated, corrupt or not an image; re-export it as PNG or JPEG."
        ) from e


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
        return _composite_on_white(im)
    if mode in ("L", "1", "CMYK", "YCbCr"):
        return im.convert("RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im)
        if mode == "F" and arr.size and np.isfinite(arr).all() and 1.0 < arr.max() <= 255.0:
            arr = arr / 255.0  # float image stored on a 0..255 scale
        return _from_array(arr)
    try:
        return im.convert("RGB")
    except ValueError as e:
        raise CnnlensError(f"Cannot convert a PIL image of mode {mode!r} to RGB; convert it yourself first.") from e


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale an array of any supported dtype to uint8."""
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:  # uint16 in either byte order
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):  # other ints: 8-bit if they fit, else 16-bit
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo >= 0 and hi <= 255:
            return a.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return _to_uint8(a.astype(np.uint16))
        raise CnnlensError(
            f"Integer image values must lie in 0..255 (8 bit) or 0..65535 (16 bit); got {lo}..{hi}. "
            "Rescale the array first."
        )
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise CnnlensError("The image array contains NaN or infinite values; replace them first.")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise CnnlensError(
                f"Float image arrays must hold values in [0, 1]; got [{lo:.4g}, {hi:.4g}]. "
                "If the values are 0..255, divide by 255 (or pass a uint8 array)."
            )
        return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise CnnlensError(f"Unsupported image array dtype {a.dtype}; use uint8, uint16, bool or float in [0, 1].")


def _from_array(a: np.ndarray) -> Image.Image:
    shape = a.shape
    if a.ndim == 3 and shape[2] == 1:
        a = a[:, :, 0]
    ok = a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (2, 3, 4))
    if not ok:
        hint = ""
        if a.ndim == 3 and shape[0] in (1, 3, 4):
            hint = " It looks channels-first; use a.transpose(1, 2, 0)."
        elif a.ndim == 4:
            hint = " For a batch of images pass a list of arrays."
        raise CnnlensError(f"Image arrays must have shape (H, W), (H, W, 3) or (H, W, 4); got {shape}.{hint}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise CnnlensError(f"The image array is empty (shape {shape}).")
    u8 = np.ascontiguousarray(_to_uint8(a))
    if u8.ndim == 2:
        return Image.fromarray(u8, mode="L").convert("RGB")
    channels = u8.shape[2]
    if channels == 3:
        return Image.fromarray(u8, mode="RGB")
    mode = "LA" if channels == 2 else "RGBA"
    return _composite_on_white(Image.fromarray(u8, mode=mode))


def sample_image(name: str) -> Image.Image:
    """Return one of :data:`SAMPLE_IMAGES` (shipped with scikit-image) as an RGB PIL image."""
    if name not in SAMPLE_IMAGES:
        raise CnnlensError(f"Unknown sample image {name!r}. Available: {', '.join(SAMPLE_IMAGES)}.")
    import skimage.data

    arr: Any = getattr(skimage.data, name)()
    return load_image(np.asarray(arr))


def sample_images(names: list[str] | tuple[str, ...] | None = None) -> dict[str, Image.Image]:
    """Return ``{name: RGB PIL image}`` for ``names`` (default: all of :data:`SAMPLE_IMAGES`)."""
    if isinstance(names, str):
        names = [names]
    chosen = SAMPLE_IMAGES if names is None else tuple(names)
    return {name: sample_image(name) for name in chosen}
