"""Datasets of image files: `ImageFolder` (one sub-folder per class) and `CsvImages` (``path,label`` rows).

Files are decoded when read (``load_image`` handles grayscale, RGBA, palette, CMYK and 16-bit images). A file that
cannot be used is never dropped silently: it is listed in ``dataset.skipped`` as ``(path, reason)`` and a
``CnnlensWarning`` says so (``on_error="report"``), or a ``CnnlensError`` names it (``on_error="raise"``).
"""

from __future__ import annotations

import csv
import os
import stat
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

from cnnlens.core.errors import CnnlensError, CnnlensWarning, say
from cnnlens.data._classes import close_classes, mismatch_message, resolve_class_map
from cnnlens.data._images import load_image, special_kind, unreadable

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
            fix = say("on_error='report'", "--on-error report")
            raise CnnlensError(f"{len(problems)} {what}: {listing}. Fix them, or pass {fix} to skip them.")
        self.skipped.extend(problems)
        where = say("listed in .skipped", "listed in the outputs")
        warnings.warn(f"Skipped {len(problems)} {what} ({where}): {listing}", CnnlensWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, skipped={len(self.skipped)})"


def _special(path: Path) -> str:
    return f"{special_kind(path.stat().st_mode)}, not a regular file; not read"


class _Walk:
    """Files under class folders, following symlinks: each folder and each file is read once (by device and
    inode); broken and looping symlinks, folders reached again and files reached twice are reported as problems.
    Hidden entries (``.name``) are passed over."""

    def __init__(self) -> None:
        self.folders: dict[tuple[int, int], str] = {}
        self.files: dict[tuple[int, int], str] = {}
        self.problems: list[tuple[str, str]] = []

    def __call__(self, folder: Path) -> list[Path]:
        found: list[Path] = []
        self._visit(folder, found)
        return found

    def _visit(self, folder: Path, found: list[Path]) -> None:
        st = folder.stat()
        key = (st.st_dev, st.st_ino)
        if key in self.folders:
            self.problems.append((str(folder), f"a link to the folder {self.folders[key]}, which is read already"))
            return
        self.folders[key] = str(folder)
        try:
            entries = sorted(folder.iterdir())
        except OSError as e:
            self.problems.append((str(folder), f"cannot list this folder ({e.strerror})"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()  # follows symlinks
            except OSError:
                self.problems.append((str(entry), unreadable(entry)))
                continue
            if stat.S_ISDIR(st.st_mode):
                self._visit(entry, found)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in self.files:
                    self.problems.append((str(entry), f"the same file as {self.files[key]}, which is read already"))
                    continue
                self.files[key] = str(entry)
                found.append(entry)
            else:  # never opened: reading a FIFO waits forever, a device never ends
                self.problems.append((str(entry), f"{special_kind(st.st_mode)}, not a regular file; not read"))


class ImageFolder(ImageFiles):
    """Images under ``root/<class folder>/`` (sub-folders included); classes in sorted folder-name order, or the
    order of ``classes`` (e.g. the model's class names).

    ``class_map``: folder name -> class name or index, for folders not named like a class (``{"cat": "tabby"}``).
    A folder that is no class is left out and listed in ``ignored`` (``on_error="report"``: a warning says so,
    with the close class names; ``"raise"``: an error); when no folder is a class, a ``CnnlensError`` lists the
    folders, the close class names and how to map them. Symlinks are followed, each folder and file once; broken
    or looping symlinks and files reached twice are skipped and listed in ``skipped`` (or raise), never dropped
    silently. A class folder with no images is kept (its index stays valid) and reported in ``empty_classes``;
    files that are not images, and files beside the class folders, are listed in ``ignored``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        classes: Sequence[str] | None = None,
        on_error: str = "report",
        class_map: Mapping[str, str | int] | None = None,
    ) -> None:
        root = Path(root)
        _check_on_error(on_error)
        if not root.is_dir():
            raise CnnlensError(f"Image folder not found: {str(root)!r}. Pass a folder with one sub-folder per class.")
        walk = _Walk()
        entries = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
        folders = [p.name for p in entries if p.is_dir()]
        names = list(folders) if classes is None else [str(c) for c in classes]
        if not names:
            raise CnnlensError(f"{str(root)!r} has no class sub-folders; put each class's images in root/<class>/.")
        if len(set(names)) != len(names):
            raise CnnlensError(f"classes contains duplicates: {names}.")
        mapping = resolve_class_map(class_map, names)
        missing = [f for f in mapping if f not in folders]
        if missing:
            raise CnnlensError(
                f"{say('class_map', '--class-map')} names {', '.join(missing)}, which is not a folder in "
                f"{str(root)!r} (its folders: {', '.join(folders) or 'none'})"
            )
        labels = {f: mapping[f] if f in mapping else names.index(f) for f in folders if f in mapping or f in names}
        unmatched = [f for f in folders if f not in labels]
        walk.problems += [(str(p), unreadable(p)) for p in entries if p.is_symlink() and not p.exists()]
        walk.problems += [(str(p), _special(p)) for p in entries if p.exists() and not p.is_dir() and not p.is_file()]
        self.ignored: list[str] = [str(root / f) for f in unmatched] + [str(p) for p in entries if p.is_file()]
        suffixes = _image_suffixes()
        items: list[tuple[Path, int]] = []
        empty_folders = []
        for folder, label in labels.items():
            files = walk(root / folder)
            images = [p for p in files if p.suffix.lower() in suffixes]
            self.ignored.extend(str(p) for p in files if p not in images)
            if not images:
                empty_folders.append(folder)
            items.extend((p, label) for p in images)
        super().__init__(items, names, on_error)
        self.root = root
        self.class_map = {f: names[i] for f, i in mapping.items()}
        self.empty_classes: list[str] = [n for i, n in enumerate(names) if i not in {label for _, label in items}]
        if unmatched:
            found = {f: sum(p.suffix.lower() in suffixes for p in _Walk()(root / f)) for f in unmatched}
            if not items and classes is not None:
                raise CnnlensError(mismatch_message(str(root), found, names))
            self._unmatched(found, names)
        self._problems(walk.problems, f"unusable entr(ies) under {str(root)!r}")
        if empty_folders:
            shown = ", ".join(empty_folders[:10]) + (" ..." if len(empty_folders) > 10 else "")
            warnings.warn(
                f"No images for {len(empty_folders)} class(es) ({shown}) in {str(root)!r}"
                f"{say(' (listed in .empty_classes)', '')}; their recall and AUC cannot be measured.",
                CnnlensWarning,
                stacklevel=2,
            )
        if not items:
            raise CnnlensError(
                f"No image files found under {str(root)!r} (looked in {', '.join(labels) or 'nothing'})."
            )

    def _unmatched(self, found: dict[str, int], names: list[str]) -> None:
        """Folders that are no class: an error (on_error="raise") or a warning, with close class names."""
        close = "; ".join(f"{f}: {', '.join(close_classes(f, names, 3)) or 'none'}" for f in list(found)[:5])
        fix = say("class_map={folder: class}", "--class-map folder=class")
        message = (
            f"{len(found)} folder(s) in {str(self.root)!r} are not among the classes: "
            + ", ".join(f"{f} ({n} images)" for f, n in list(found.items())[:10])
            + f". Close class names: {close}. Map them with {fix}, or remove them"
        )
        if self.on_error == "raise":
            skip = say("on_error='report'", "--on-error report")
            raise CnnlensError(f"{message}; {skip} leaves them out")
        where = say(" (listed in .ignored)", "")
        warnings.warn(f"{message}; they are left out{where}", CnnlensWarning, stacklevel=3)


class UnlabelledImages(ImageFiles):
    """Every image under ``root`` (sub-folders included, symlinks followed once), without labels: for photos
    whose folder names are not classes (``model.predict(images, top_k=5)`` gives their top classes).

    ``classes`` are the first-level folder names (``"."`` for images directly in ``root``), so that
    ``dataset[i]`` is ``(image, index of its folder)``. Broken or looping symlinks and files reached twice are
    listed in ``skipped`` (``on_error="report"``) or raise; files that are not images are listed in ``ignored``.
    """

    def __init__(self, root: str | os.PathLike[str], on_error: str = "report") -> None:
        root = Path(root)
        _check_on_error(on_error)
        if not root.is_dir():
            raise CnnlensError(f"Image folder not found: {str(root)!r}.")
        walk = _Walk()
        files = walk(root)
        suffixes = _image_suffixes()
        images = [p for p in files if p.suffix.lower() in suffixes]

        def group(p: Path) -> str:
            parts = p.relative_to(root).parts
            return parts[0] if len(parts) > 1 else "."

        names = sorted({group(p) for p in images})
        super().__init__([(p, names.index(group(p))) for p in images], names, on_error)
        self.root = root
        self.ignored = [str(p) for p in files if p not in images]
        self._problems(walk.problems, f"unusable entr(ies) under {str(root)!r}")
        if not self.items:
            raise CnnlensError(f"No image files found under {str(root)!r}.")


class CsvImages(ImageFiles):
    """Images listed in a CSV file of ``path,label`` rows (an optional ``path,label`` header is skipped).

    Relative paths are resolved against ``root`` (default: the CSV file's folder). Classes are the sorted labels
    (numerically if all are integers) unless ``classes`` gives the order; ``class_map`` maps labels that are not
    class names to a class name or index (``{"cat": "tabby"}``). Rows whose file is missing (or a broken symlink)
    or whose label is unknown are reported by row number; when no label is a class, a ``CnnlensError`` lists the
    labels, the close class names and how to map them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        classes: Sequence[str] | None = None,
        root: str | os.PathLike[str] | None = None,
        on_error: str = "report",
        class_map: Mapping[str, str | int] | None = None,
    ) -> None:
        path = Path(path)
        _check_on_error(on_error)
        if not path.is_file():
            if path.exists():  # a FIFO, socket or device: never opened
                raise CnnlensError(f"{str(path)!r} is {_special(path)}; give a path,label CSV file.")
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
                reason = (
                    _special(file) if file.exists() else unreadable(file) if file.is_symlink() else "file not found"
                )
                problems.append((str(file), f"row {n}: {reason}"))
                continue
            good.append((file, row[1].strip()))
        if classes is None:
            labels = {label for _, label in good}
            numeric = all(label.lstrip("-").isdigit() for label in labels)
            names = sorted(labels, key=int) if numeric else sorted(labels)
        else:
            names = [str(c) for c in classes]
        index = {name: i for i, name in enumerate(names)} | resolve_class_map(class_map, names)
        if classes is not None and good and not any(label in index for _, label in good):
            found = Counter(label for _, label in good)
            raise CnnlensError(mismatch_message(str(path), dict(found), names, kind="label"))
        unknown = [(str(f), f"label {label!r} is not one of the classes") for f, label in good if label not in index]
        super().__init__([(f, index[label]) for f, label in good if label in index], names, on_error)
        self.path = path
        self._problems(problems + unknown, f"unusable row(s) in {str(path)!r}")
        if not self.items:
            raise CnnlensError(f"{str(path)!r} lists no usable images ({len(rows)} row(s) read).")
