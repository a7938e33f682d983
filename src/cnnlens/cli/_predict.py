"""``cnnlens evaluate --unlabelled``: the top classes of every image in a folder whose names are not classes."""

from __future__ import annotations

import argparse
import csv
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import CnnlensError, CnnlensWarning
from ..core.files import atomic_open, output_folder, write_json
from ._data_flags import image_sizes, stray_files
from ._model_flags import check_sizes, load_classifier, model_name

if TYPE_CHECKING:
    from ..models import Classifier

TOP_K = 5


def _dataset(spec: str, on_error: str) -> Any:
    from ..data import UnlabelledImages, open_dataset

    if Path(spec).is_dir():
        return UnlabelledImages(spec, on_error=on_error)
    return open_dataset(spec, on_error=on_error)  # digits: or a CSV: their labels only group the images


def predictions(
    classifier: Classifier, dataset: Any, top_k: int, batch_size: int, on_error: str, progress: bool
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """``(rows, skipped)``: one row per readable image (id, folder, its top classes and probabilities) and
    ``(id, reason)`` for each image that cannot be read (``on_error="raise"``: a ``CnnlensError`` instead)."""
    from ..core.model_guard import frozen
    from ..core.progress import progress_bar

    rows: list[dict[str, Any]] = []
    skipped = list(getattr(dataset, "skipped", []))
    ids = dataset.ids
    bar = progress_bar(total=len(dataset), desc="predicting", unit="img", disable=not progress)
    with frozen(classifier.module), bar:
        for start in range(0, len(dataset), batch_size):
            images, kept = [], []
            for i in range(start, min(start + batch_size, len(dataset))):
                try:
                    image, group = dataset[i]
                except CnnlensError as e:
                    if on_error == "raise":
                        raise CnnlensError(f"{e} (or pass --on-error report to skip unreadable files)") from e
                    skipped.append((ids[i], str(e)))
                    continue
                images.append(image)
                kept.append((i, group))
            if images:
                for (i, group), top in zip(kept, classifier.predict(images, top_k=top_k), strict=True):
                    row: dict[str, Any] = {"id": ids[i], "folder": dataset.classes[group]}
                    for rank, (_, name, p) in enumerate(top, start=1):
                        row[f"top{rank}"], row[f"p_top{rank}"] = name, round(p, 6)
                    rows.append(row)
            bar.update(min(batch_size, len(dataset) - start))
    return rows, skipped


def predict_unlabelled(args: argparse.Namespace, spec: str) -> None:
    """Write ``predictions.csv`` (top-5 classes of every image) and ``predictions.json`` (per folder: images and
    how often each class comes first), and print the per-folder summary."""
    if args.class_map is not None:
        raise CnnlensError("--class-map and --unlabelled exclude each other: a class map labels the folders")
    out = Path(args.out)
    with output_folder(out, "evaluate --unlabelled", model=model_name(args), data=spec) as folder:
        classifier = load_classifier(args)
        dataset = _dataset(spec, args.on_error)
        stray_files(dataset, args.on_error, "not an image file")
        check_sizes(classifier, image_sizes(dataset))
        k = min(TOP_K, classifier.num_classes)
        rows, skipped = predictions(
            classifier, dataset, k, args.batch_size, args.on_error, progress=not args.no_progress
        )
        if not rows:
            raise CnnlensError(f"no image in {spec} could be read ({len(skipped)} skipped)")
        with atomic_open(folder.file("predictions.csv"), "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        summary = _summary(rows)
        write_json(
            folder.file("predictions.json"),
            {"model": classifier.name, "data": spec, "images": len(rows), "top_k": k, "folders": summary,
             "skipped": [{"id": i, "reason": r} for i, r in skipped]},
        )  # fmt: skip
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s), listed below", CnnlensWarning, stacklevel=2)
    for name, info in summary.items():
        firsts = ", ".join(f"{c} {n}" for c, n in list(info["top1"].items())[:5])
        print(f"{name}: {info['images']} image(s); most often first: {firsts}")
    for sample, reason in skipped[:10]:
        print(f"skipped {sample}: {reason}")
    print(f"wrote the top-{k} classes of {len(rows)} image(s) to {out / 'predictions.csv'} and predictions.json")


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per folder: the number of images and how often each class is the first answer (most often first)."""
    out: dict[str, dict[str, Any]] = {}
    for folder in dict.fromkeys(r["folder"] for r in rows):
        firsts = Counter(r["top1"] for r in rows if r["folder"] == folder)
        out[folder] = {"images": sum(firsts.values()), "top1": dict(firsts.most_common())}
    return out
