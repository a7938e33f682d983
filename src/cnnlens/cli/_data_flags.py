"""The data arguments the commands share: ``DATA`` (a dataset spec), ``--on-error``, ``--class-map``, and one image
given by path or as ``digits:SPLIT:INDEX``."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError, CnnlensWarning
from ._model_flags import check_sizes

DATA_HELP = "digits:test|train|field, a folder with one sub-folder per class, or a path,label CSV"
SIZE_SAMPLE = 50  # images whose size is compared with the model's input (`check_sizes`)


def add_on_error(p: argparse.ArgumentParser) -> None:
    """``--on-error raise|report`` for unreadable files in a dataset."""
    p.add_argument(
        "--on-error",
        choices=["raise", "report"],
        default="raise",
        help="a file in the data that cannot be used (not an image, unreadable, a broken symlink, a folder that is "
        "no class): stop with its name (default), or skip and list it",
    )


def add_class_map(p: argparse.ArgumentParser) -> None:
    """``--class-map``: folders (or CSV labels) that are not the model's class names."""
    p.add_argument(
        "--class-map",
        default=None,
        metavar="FILE|FOLDER=CLASS,...",
        help="map folder names (or CSV labels) that are not class names of the model to a class name or index, "
        "e.g. cat=tabby,mug=504, or a file of folder=class lines",
    )


def class_map(args: argparse.Namespace) -> dict[str, str | int] | None:
    """The ``--class-map`` given, read (``None`` without one)."""
    from ..data import read_class_map

    return None if args.class_map is None else dict(read_class_map(args.class_map))


def open_data(spec: str, classifier: Any, args: argparse.Namespace) -> Any:
    """``open_dataset`` for the model's classes (and ``--class-map``); stray files are an error (or a warning
    with ``--on-error report``); sizes far from the model's input get a warning."""
    from ..data import open_dataset, read_class_map

    class_map = read_class_map(args.class_map) if args.class_map is not None else None
    if class_map is not None and spec.startswith("digits:"):
        raise CnnlensError(f"--class-map maps class folders or CSV labels; {spec} is labelled already")
    dataset = open_dataset(spec, classes=classifier.class_names, on_error=args.on_error, class_map=class_map)
    names = classifier.class_names
    if spec.startswith("digits:") and names is not None and list(dataset.classes) != list(names):
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise CnnlensError(
            f"{spec} holds the handwritten digits 0-9, but {classifier.name} has other classes ({shown}); pass "
            "--model digits_cnn, or a model whose classes are the digits 0..9"
        )
    stray_files(dataset, args.on_error)
    check_sizes(classifier, image_sizes(dataset))
    return dataset


def stray_files(
    dataset: Any, on_error: str, what: str = "not an image file in a class folder, or a file beside the class folders"
) -> None:
    """Files of the data that are not used (``dataset.ignored``): an error, or with ``--on-error report`` a
    warning naming them."""
    stray = [str(p) for p in map(Path, getattr(dataset, "ignored", [])) if p.is_file() and not p.name.startswith(".")]
    if stray:
        shown = ", ".join(stray[:5]) + (f" (+{len(stray) - 5} more)" if len(stray) > 5 else "")
        if on_error == "raise":
            raise CnnlensError(f"{what}: {shown}; remove it, or pass --on-error report to skip it")
        warnings.warn(f"skipped {len(stray)} file(s) that are not used: {shown}", CnnlensWarning, stacklevel=3)


def image_sizes(dataset: Any) -> dict[str, tuple[int, int]]:
    """(width, height) of up to `SIZE_SAMPLE` images spread over the dataset, read from the file headers."""
    from PIL import Image

    if hasattr(dataset, "images"):  # in-memory arrays
        return {dataset.ids[0]: (dataset.images.shape[2], dataset.images.shape[1])} if len(dataset) else {}
    items = getattr(dataset, "items", [])
    sizes = {}
    for path, _ in items[:: max(1, len(items) // SIZE_SAMPLE)][:SIZE_SAMPLE]:
        if not Path(path).is_file():  # a FIFO or device is never opened; it is reported when it is read
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with Image.open(path) as im:
                    size = im.size
        except Exception:  # noqa: BLE001 - a bad file is reported when it is read
            continue
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught):
            warnings.warn(
                f"{str(path)!r} claims {size[0]}x{size[1]} pixels, more than PIL.Image.MAX_IMAGE_PIXELS allows: it "
                "may be a decompression bomb, and it is not decoded (it is refused when its turn comes)",
                CnnlensWarning,
                stacklevel=2,
            )
            continue
        sizes[str(path)] = size
    return sizes


def read_image(text: str) -> Any:
    """An image file, or ``digits:SPLIT:INDEX`` (e.g. ``digits:field:7``): one image of the bundled digits."""
    from ..data import digits, load_image

    if not text.startswith("digits:") or Path(text).exists():
        return load_image(text)
    parts = text.split(":")
    if len(parts) != 3:
        raise CnnlensError(f"{text!r}: expected digits:SPLIT:INDEX, e.g. digits:test:0")
    data = digits(parts[1])
    if not parts[2].isdigit() or int(parts[2]) >= len(data):
        raise CnnlensError(f"{text!r}: expected digits:SPLIT:INDEX with INDEX in 0..{len(data) - 1}")
    return load_image(data[int(parts[2])][0])
