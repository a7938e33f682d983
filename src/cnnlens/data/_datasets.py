"""Datasets of image files: `ImageFolder` (one sub-folder per class) and `CsvImages` (``path,label`` rows).

Files are decoded when read (``load_image`` handles grayscale, RGBA, palette, CMYK and 16-bit images). A file that
cannot be used is never dropped silently: it is listed in ``dataset.skipped`` as ``(path, reason)`` and a
``CnnlensWarning`` says so (``on_error="report"``), or a ``CnnlensError`` names it (``on_error="raise"``).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from cnnlens._errors import CnnlensError, CnnlensWarning
from cnnlens.data._images import load_image

ON_ERROR = ("report", "raise")


def _check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise CnnlensError(f"on_error must be 'report' (skip and list the file) or 'raise'; got {on_error!r}.")
    return on_error


def _image_suffixes() -> set[str]:
    return {s.lower() for s in Image.registered_extensions()}


class ImageFiles:
    """Base: ``items`` is a list of ``(path, label index)``; ``dataset[i]`` is ``(RGB PIL image, label)``."""

    def __init__(self, items: list[tuple[Path, int]], classes: list[str], on_error: str) -> None:
        self.items = items
        self.classes = classes
        self.on_error = _check_on_error(on_error)
        self.skipped: list[tuple[str, str]] = []

    @property
    def ids(self) -> list[str]:
        return [str(p) for p, _ in self.items]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path, label = self.items[i]
        return load_image(path), label  # CnnlensError naming the path if it cannot be decoded

    def scan(self) -> list[tuple[str, str]]:
        """Decode every file now; return ``(path, reason)`` for each one that fails (they stay in ``items``)."""
        bad = []
        for path, _ in self.items:
            try:
                load_image(path)
            except CnnlensError as e:
                bad.append((str(path), str(e)))
        return bad

    def _problems(self, problems: list[tuple[str, str]], what: str) -> None:
        if not problems:
            return
        listing = "; ".join(f"{p}: {r}" for p, r in problems[:10]) + (" ..." if len(problems) > 10 else "")
        if self.on_error == "raise":
            raise CnnlensError(f"{len(problems)} {what}: {listing}. Fix them, or pass on_error='report' to skip them.")
        self.skipped.extend(problems)
        warnings.warn(f"Skipped {len(problems)} {what} (listed in .skipped): {listing}", CnnlensWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, skipped={len(self.skipped)})"


class ImageFolder(ImageFiles):
    """Images under ``root/<class name>/``; classes in sorted folder-name order, or the order of ``classes``.

    A class with no images is kept (its index stays valid) and reported in ``empty_classes``; folders not in
    ``classes`` and files that are not images are listed in ``ignored``.
    """

    def __init__(
        self, root: str | os.PathLike[str], classes: Sequence[str] | None = None, on_error: str = "report"
    ) -> None:
        root = Path(root)
        _check_on_error(on_error)
        if not root.is_dir():
            raise CnnlensError(f"Image folder not found: {str(root)!r}. Pass a folder with one sub-folder per class.")
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        names = list(folders) if classes is None else [str(c) for c in classes]
        if not names:
            raise CnnlensError(f"{str(root)!r} has no class sub-folders; put each class's images in root/<class>/.")
        if len(set(names)) != len(names):
            raise CnnlensError(f"classes contains duplicates: {names}.")
        suffixes = _image_suffixes()
        items: list[tuple[Path, int]] = []
        self.ignored: list[str] = [str(root / f) for f in folders if f not in names]
        self.empty_classes: list[str] = []
        for label, name in enumerate(names):
            folder = root / name
            files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
            images = [p for p in files if p.suffix.lower() in suffixes and not p.name.startswith(".")]
            self.ignored.extend(str(p) for p in files if p not in images)
            if not images:
                self.empty_classes.append(name)
            items.extend((p, label) for p in images)
        super().__init__(items, names, on_error)
        self.root = root
        if self.empty_classes:
            shown = ", ".join(self.empty_classes[:10]) + (" ..." if len(self.empty_classes) > 10 else "")
            warnings.warn(
                f"No images for {len(self.empty_classes)} class(es) ({shown}) in {str(root)!r} "
                "(listed in .empty_classes); "
                "their recall and AUC cannot be measured.",
                CnnlensWarning,
                stacklevel=2,
            )
        if not items:
            raise CnnlensError(f"No image files found under {str(root)!r} (looked in {', '.join(names)}).")


class CsvImages(ImageFiles):
    """Images listed in a CSV file of ``path,label`` rows (an optional ``path,label`` header is skipped).

    Relative paths are resolved against ``root`` (default: the CSV file's folder). Classes are the sorted labels
    (numerically if all are integers) unless ``classes`` gives the order. Rows whose file is missing or whose
    label is unknown are reported by row number.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        classes: Sequence[str] | None = None,
        root: str | os.PathLike[str] | None = None,
        on_error: str = "report",
    ) -> None:
        path = Path(path)
        _check_on_error(on_error)
        if not path.is_file():
            raise CnnlensError(f"CSV file not found: {str(path)!r}.")
        base = Path(root) if root is not None else path.parent
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
            rows = rows[1:]
        problems: list[tuple[str, str]] = []
        good: list[tuple[Path, str]] = []
        for n, row in rows:
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                problems.append((f"{path}:{n}", f"expected 'path,label', got {','.join(row)!r}"))
                continue
            file = Path(row[0].strip())
            file = file if file.is_absolute() else base / file
            if not file.is_file():
                problems.append((str(file), f"row {n}: file not found"))
                continue
            good.append((file, row[1].strip()))
        if classes is None:
            labels = {label for _, label in good}
            numeric = all(label.lstrip("-").isdigit() for label in labels)
            names = sorted(labels, key=int) if numeric else sorted(labels)
        else:
            names = [str(c) for c in classes]
        index = {name: i for i, name in enumerate(names)}
        unknown = [(str(f), f"label {label!r} is not one of the classes") for f, label in good if label not in index]
        super().__init__([(f, index[label]) for f, label in good if label in index], names, on_error)
        self.path = path
        self._problems(problems + unknown, f"unusable row(s) in {str(path)!r}")
        if not self.items:
            raise CnnlensError(f"{str(path)!r} lists no usable images ({len(rows)} row(s) read).")
