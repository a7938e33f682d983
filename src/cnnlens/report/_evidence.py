"""What the maps showed, in words: where in the image the evidence for a class lies (a part of a 3 x 3 grid), and
for drawings on a plain background (digits), how much of it lies on the strokes.

Evidence is the positive part of a map (what speaks for the explained class), channels summed; several methods'
maps of one image are combined by averaging their evidence, each first scaled to sum 1 (so each method has the
same say).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..core.errors import CnnlensError

PARTS = (
    ("upper left", "top", "upper right"),
    ("left", "centre", "right"),
    ("lower left", "bottom", "lower right"),
)


def evidence(attribution: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The positive part of one map ``(C, H, W)`` or ``(H, W)`` (channels summed; resized to ``size``), scaled
    to sum 1 (all zeros when there is no positive evidence)."""
    from ..viz import resize_map

    a = np.asarray(attribution, dtype=np.float64)
    a = a.sum(0) if a.ndim == 3 else a
    if a.ndim != 2:
        raise CnnlensError(f"a map must be (H, W) or (C, H, W); got shape {a.shape}")
    if size is not None:
        a = resize_map(a, size)
    a = np.clip(a, 0.0, None)
    total = a.sum()
    return a / total if total > 0 else a


def consensus(maps: Sequence[np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
    """The mean of several methods' `evidence` for one image (each scaled to sum 1, so each has the same say)."""
    if not maps:
        raise CnnlensError("consensus needs at least one map")
    return np.mean([evidence(m, size) for m in maps], axis=0)


def part_shares(weights: np.ndarray) -> np.ndarray:
    """``(3, 3)`` share of ``weights`` (H, W) in each part of a 3 x 3 grid over the image."""
    h, w = weights.shape
    rows, cols = np.array_split(np.arange(h), 3), np.array_split(np.arange(w), 3)
    shares = np.array([[weights[np.ix_(r, c)].sum() for c in cols] for r in rows])
    total = shares.sum()
    return shares / total if total > 0 else shares


def main_part(weights: np.ndarray) -> str:
    """The part of the image (``PARTS``) holding the largest share of ``weights``."""
    i, j = np.unravel_index(int(np.argmax(part_shares(weights))), (3, 3))
    return PARTS[i][j]


def stroke_share(image: np.ndarray, weights: np.ndarray) -> float | None:
    """For a gray drawing (all channels equal) with light strokes on a darker background: the share of
    ``weights`` on the strokes (pixels brighter than Otsu's threshold). ``None`` for colour images."""
    from skimage.filters import threshold_otsu

    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        if not np.allclose(img, img[..., :1], atol=1e-6):
            return None
        img = img[..., 0]
    if img.max() - img.min() < 1e-6:
        return None
    total = weights.sum()
    if total <= 0:
        return None
    ink = img > threshold_otsu(img)
    return float(weights[ink].sum() / total)


def where_note(
    true: str,
    predicted: str,
    misread: Sequence[tuple[np.ndarray, np.ndarray]],
    correct: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    methods: int = 1,
) -> str | None:
    """One sentence on where the evidence for ``predicted`` lies in images of ``true`` read as ``predicted``
    (``misread``: (image (H, W, 3) in [0, 1], consensus evidence (H, W)) pairs), compared with correctly read
    ``predicted`` images (``correct``), from the maps of ``methods`` methods:
    ``For 3 of 4 misread 3s the evidence for 9 lies mostly in the upper right, 62% of it on the strokes; in
    correctly read 9s it lies in the centre.``"""
    if not misread:
        return None
    parts = [main_part(w) for _, w in misread]
    part, count = Counter(parts).most_common(1)[0]
    n = len(misread)
    who = f"the misread {true}" if n == 1 else f"{count} of {n} misread {true}s"
    text = f"For {who} the evidence for {predicted} lies mostly in the {part} of the image"
    strokes = [stroke_share(img, w) for img, w in misread]
    known = [s for s in strokes if s is not None]
    if len(known) == len(strokes):
        share = float(np.mean(known))
        text += f", {100 * share:.0f}% of it on the strokes" if share >= 0.5 else (
            f", {100 * (1 - share):.0f}% of it off the strokes (on the background)"
        )  # fmt: skip
    if correct:
        theirs = Counter(main_part(w) for _, w in correct).most_common(1)[0][0]
        same = "also" if theirs == part else "instead"
        text += f"; in correctly read {predicted}s it lies {same} mostly in the {theirs}"
    via = f" ({methods} methods' maps combined)" if methods > 1 else ""
    return text + via + "."


def photo_where_note(name: str, label: str, maps: dict[str, np.ndarray], size: tuple[int, int]) -> str | None:
    """Where most methods put the evidence for ``label`` in one photo: ``chelsea: 20 of 29 methods put most of
    the evidence for 'tiger cat' in the centre.``"""
    parts = [main_part(evidence(a, size)) for a in maps.values() if evidence(a, size).sum() > 0]
    if not parts:
        return None
    part, count = Counter(parts).most_common(1)[0]
    return f"{name}: {count} of {len(parts)} methods put most of the evidence for '{label}' in the {part}."
