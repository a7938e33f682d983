"""scikit-learn's handwritten digits, upsampled to 32x32, split into train / test / field (offline).

The ``field`` split holds held-out digits changed the way photos taken in the field differ from a clean
training set: thicker strokes, shifts, small rotations, lower contrast on a grey background, sensor noise.
"""

from __future__ import annotations

import functools

import numpy as np

from cnnlens.core.errors import CnnlensError
from cnnlens.data._arrays import ArrayImages

SPLITS = ("train", "test", "field")
DIGITS_SIZE = 32  # 8x8 digits are upsampled to 24x24 and padded by 4 pixels on each side
_PAD = 4


@functools.lru_cache(maxsize=4)
def _split_indices(seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    y = _raw()[1]
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=seed)
    test, field = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=seed)
    return {"train": np.sort(train), "test": np.sort(test), "field": np.sort(field)}


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float64) / 16.0, d.target.astype(np.int64)


def _upsample(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) in [0, 1] -> (N, 32, 32) float in [0, 1], digit in the central 24x24."""
    from skimage.transform import resize

    inner = DIGITS_SIZE - 2 * _PAD
    big = resize(images, (len(images), inner, inner), order=1, anti_aliasing=False, mode="edge")
    out = np.zeros((len(images), DIGITS_SIZE, DIGITS_SIZE))
    out[:, _PAD:-_PAD, _PAD:-_PAD] = big
    return np.clip(out, 0.0, 1.0)


def _field(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thicker strokes, shifts, rotations, low contrast on grey, noise."""
    from scipy.ndimage import grey_dilation, shift
    from skimage.transform import rotate

    out = np.empty_like(images)
    for i, im in enumerate(images):
        im = grey_dilation(im, size=(2, 2))
        im = rotate(im, rng.uniform(-10, 10), order=1, mode="constant", cval=0.0)
        im = shift(im, rng.integers(-2, 3, size=2), order=0, mode="constant", cval=0.0)
        background, ink = rng.uniform(0.0, 0.03), rng.uniform(0.6, 1.0)
        im = background + (ink - background) * im
        out[i] = im + rng.normal(0.0, 0.04, size=im.shape)
    return np.clip(out, 0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _digits_arrays(split: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels = _raw()
    idx = _split_indices(seed)[split]
    big = _upsample(images[idx])
    if split == "field":
        big = _field(big, np.random.default_rng(seed + 1000))
    u8 = np.round(big * 255.0).astype(np.uint8)
    u8.setflags(write=False)
    return u8, labels[idx], idx


def digits(split: str = "test", seed: int = 0) -> ArrayImages:
    """Handwritten digits 0-9 as 32x32 grayscale uint8 images: ``train`` (60%), ``test`` (20%) or ``field`` (20%).

    The splits are disjoint and stratified under ``seed``; ``field`` images are distorted (see module doc).
    """
    if split not in SPLITS:
        raise CnnlensError(f"Unknown digits split {split!r}; use one of {', '.join(SPLITS)}.")
    images, labels, idx = _digits_arrays(split, int(seed))
    ids = [f"digits/{split}/{int(i)}" for i in idx]
    return ArrayImages(images, labels, [str(d) for d in range(10)], ids=ids, name=f"digits-{split}")
