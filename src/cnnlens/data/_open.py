"""`open_dataset`: a dataset from a short text, as the command line takes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnlens.core.errors import CnnlensError
from cnnlens.data._arrays import ArrayImages
from cnnlens.data._datasets import CsvImages, ImageFiles, ImageFolder
from cnnlens.data._digits import SPLITS, digits


def open_dataset(
    spec: str,
    classes: Sequence[str] | None = None,
    on_error: str = "report",
    class_map: Mapping[str, str | int] | None = None,
) -> ArrayImages | ImageFiles:
    """``"digits:test"`` (or ``train`` / ``field``), a folder (one sub-folder per class) or a ``.csv`` file;
    ``classes``, ``on_error`` and ``class_map`` as `ImageFolder` and `CsvImages` take them."""
    if spec.startswith("digits:"):
        split = spec.partition(":")[2]
        if split not in SPLITS:
            raise CnnlensError(f"Unknown digits split in {spec!r}; use digits:{', digits:'.join(SPLITS)}.")
        return digits(split)
    path = Path(spec)
    if path.is_dir():
        return ImageFolder(path, classes=classes, on_error=on_error, class_map=class_map)
    if path.suffix.lower() == ".csv":
        return CsvImages(path, classes=classes, on_error=on_error, class_map=class_map)
    raise CnnlensError(
        f"Cannot open dataset {spec!r}: give digits:test|train|field, a folder with one sub-folder per class, "
        "or a CSV file of path,label rows."
    )
