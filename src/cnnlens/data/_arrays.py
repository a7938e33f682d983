"""`ArrayImages`: an in-memory dataset of images held as NumPy arrays, with labels and class names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnlens.core.errors import CnnlensError


class ArrayImages:
    """Images as arrays ``(N, H, W)`` or ``(N, H, W, 3)`` (uint8, or float in [0, 1]) with integer labels.

    ``dataset[i]`` is ``(image array, label)``; ``ids[i]`` names sample ``i`` in reports.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        ids: Sequence[str] | None = None,
        name: str = "arrays",
    ) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim not in (3, 4):
            raise CnnlensError(f"images must be (N, H, W) or (N, H, W, 3); got shape {images.shape}.")
        if labels.shape != (len(images),):
            raise CnnlensError(f"Need one label per image: {len(images)} images, labels of shape {labels.shape}.")
        self.classes = [str(c) for c in classes]
        if labels.dtype.kind not in "biuf" or (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
            raise CnnlensError(
                f"Labels must be integer class indices; got {labels[:5].tolist()}. Map class names to indices first."
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise CnnlensError(
                f"Labels must be class indices 0..{len(self.classes) - 1}; got {labels.min()}..{labels.max()}."
            )
        self.images = images
        self.labels = labels.astype(np.int64)
        self.ids = [str(i) for i in ids] if ids is not None else [f"{name}[{i}]" for i in range(len(images))]
        self.name = name
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])

    def __repr__(self) -> str:
        return f"ArrayImages(name={self.name!r}, n={len(self)}, classes={len(self.classes)})"
