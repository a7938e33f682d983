"""Decoding images from files, PIL images and arrays into RGB PIL images; bundled sample images."""

from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from pathlib import Path
from typing import IO, Protocol, SupportsInt, TypeAlias, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlens.core.errors import CnnlensError, CnnlensWarning, say

SAMPLE_IMAGES: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket")

ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray
"""What :func:`load_image` reads: a file path, a PIL image or a NumPy array."""


Item_co = TypeVar("Item_co", covariant=True)


class ImageDataset(Protocol[Item_co]):
    """What cnnlens reads as a labelled dataset: ``len(dataset)`` and ``dataset[i] -> (item, label)``; the item is
    an :data:`ImageInput` (``ImageDataset[ImageInput]``) or, where the model is run, also a preprocessed
    ``(C, H, W)`` tensor (``ImageDataset[ImageInput | torch.Tensor]``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int, /) -> tuple[Item_co, SupportsInt]: ...


_WHITE = (255, 255, 255, 255)
MAX_ASPECT = 50
"""Images more than this many times wider than high (or higher than wide) are refused as absurd."""


def load_image(x: ImageInput) -> Image.Image:
    """Return ``x`` (a file path, PIL image or NumPy array) as an RGB PIL image.

    Transparent images are composited on white; 16-bit images are scaled to 8 bit;
    float arrays must hold values in [0, 1]. Files are checked before their pixels are decoded: more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb) or an aspect ratio over `MAX_ASPECT` raise a
    ``CnnlensError`` naming the file; of a file with several frames (GIF, TIFF, APNG...) the first is used, and a
    ``CnnlensWarning`` says so.
    """
    if isinstance(x, (str, os.PathLike)):
        return _from_path(Path(x))
    if isinstance(x, Image.Image):
        check_aspect(x.size, "given")
        return _to_rgb(x)
    if isinstance(x, np.ndarray):
        if x.ndim >= 2:
            check_aspect((x.shape[1], x.shape[0]), f"array of shape {x.shape}")
        return _from_array(x)
    raise CnnlensError(
        f"Cannot read an image from a {type(x).__name__}. Pass a file path, a PIL image "
        "or a NumPy array of shape (H, W), (H, W, 3) or (H, W, 4)."
    )


def _from_path(path: Path) -> Image.Image:
    if not path.exists():
        if path.is_symlink():
            raise CnnlensError(f"Image file {str(path)!r} is {unreadable(path)}. Fix or remove the link.")
        raise CnnlensError(f"Image file not found: {str(path)!r}. Check the path and try again.")
    if path.is_dir():
        raise CnnlensError(f"{str(path)!r} is a directory; pass the path of an image file.")
    with _open_regular(path) as f:
        try:
            with warnings.catch_warnings():  # the size is checked below, with a clearer message, before decoding
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                opened = Image.open(f)
        except Image.DecompressionBombError as e:
            claimed = re.search(r"\((\d+) pixels\)", str(e))
            size = f"{int(claimed.group(1)) / 1e6:.0f} megapixels" if claimed else str(e)
            raise CnnlensError(_bomb_message(path, size)) from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
            raise _undecodable(path, e) from e
        with opened as im:
            return _decode(path, im)


def _open_regular(path: Path) -> IO[bytes]:
    """``path`` opened for reading when it is a regular file (after symlinks); a FIFO, socket or device raises
    ``CnnlensError`` without blocking (it is opened non-blocking and checked before a byte is read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise CnnlensError(f"Cannot open the image file {str(path)!r} ({e.strerror}).") from e
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise CnnlensError(f"{str(path)!r} is {special_kind(mode)}, not a regular file; it was not read.")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def special_kind(mode: int) -> str:
    """What a file that is not regular is, from its ``st_mode``: "a FIFO (named pipe)", "a socket", ..."""
    kinds = [(stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character "
             "device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "a special file")


def _decode(path: Path, im: Image.Image) -> Image.Image:
    """The RGB image of the opened file ``im``, its size and frames checked first."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:
        raise CnnlensError(_bomb_message(path, f"{im.width}x{im.height} pixels"))
    check_aspect(im.size, repr(str(path)))
    if getattr(im, "is_animated", False) and im.format != "MPO":  # MPO: a photo, then its previews/depth
        frames = getattr(im, "n_frames", "several")
        warnings.warn(
            f"{str(path)!r} holds {frames} frames ({im.format}); the first frame is used",
            CnnlensWarning,
            stacklevel=3,
        )
    try:
        im.load()
        rgb = _to_rgb(ImageOps.exif_transpose(im))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise _undecodable(path, e) from e
    return rgb.copy() if rgb is im else rgb


def _undecodable(path: Path, e: BaseException) -> CnnlensError:
    return CnnlensError(
        f"Could not decode the image file {str(path)!r} ({type(e).__name__}: {e}). "
        "The file may be truncated, corrupt or not an image; re-export it as PNG or JPEG."
    )


def _bomb_message(path: Path, size: str) -> str:
    limit = Image.MAX_IMAGE_PIXELS or 0
    fix = say(
        "If it is a genuine image, downscale it first or raise PIL.Image.MAX_IMAGE_PIXELS",
        "If it is a genuine image, downscale it first (e.g. to 4096 pixels on the long side)",
    )
    return (
        f"Image file {str(path)!r} claims more pixels than the {limit / 1e6:.0f} megapixels that "
        f"PIL.Image.MAX_IMAGE_PIXELS allows ({size}); it may be a decompression bomb and was not decoded. {fix}."
    )


def check_aspect(size: tuple[int, int], name: str) -> None:
    """Raise ``CnnlensError`` when an image of ``size`` (width, height) is more than `MAX_ASPECT` times wider than
    high or higher than wide: resizing its short side to a model's input would make it huge."""
    width, height = size
    if max(width, height) > MAX_ASPECT * max(min(width, height), 1):
        ratio = max(width, height) // max(min(width, height), 1)
        raise CnnlensError(
            f"Image {name} is {width}x{height} pixels, an aspect ratio of {ratio}:1 (cnnlens takes up to "
            f"{MAX_ASPECT}:1): resized for a model it would become a huge strip or be squeezed beyond recognition. "
            "Crop it into pieces first."
        )


def unreadable(path: Path) -> str:
    """Why ``path``, which cannot be opened, cannot be read: a broken symlink, a symlink loop, or the OS error."""
    try:
        path.stat()
        return "unreadable"
    except OSError as error:
        if not path.is_symlink():
            return f"unreadable ({error.strerror})"
        target = os.readlink(path)
        if error.errno == errno.ELOOP:
            return f"a symlink loop (it points to {target!r}, which leads back to itself)"
        return f"a broken symlink (it points to {target!r}, which does not exist)"


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
        low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if low < -1e-3 or high > 1.0 + 1e-3:
            raise CnnlensError(
                f"Float image arrays must hold values in [0, 1]; got [{low:.4g}, {high:.4g}]. "
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

    arr: np.ndarray = getattr(skimage.data, name)()
    return load_image(np.asarray(arr))


def sample_images(names: list[str] | tuple[str, ...] | None = None) -> dict[str, Image.Image]:
    """Return ``{name: RGB PIL image}`` for ``names`` (default: all of :data:`SAMPLE_IMAGES`)."""
    if isinstance(names, str):
        names = [names]
    chosen = SAMPLE_IMAGES if names is None else tuple(names)
    return {name: sample_image(name) for name in chosen}
