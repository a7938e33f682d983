"""``cnnlens evaluate`` (metrics and figures for a dataset) and ``cnnlens inside`` (layers of one image)."""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path
from typing import Any

from .._errors import CnnlensError, CnnlensWarning
from ._options import add_model_options, add_run_options, load_classifier, names_list, needs_hooks

DATA_HELP = "digits:test|train|field, a folder with one sub-folder per class, or a path,label CSV"


def add_on_error(p: argparse.ArgumentParser) -> None:
    """``--on-error raise|report`` for unreadable files in a dataset."""
    p.add_argument(
        "--on-error",
        choices=["raise", "report"],
        default="raise",
        help="a file in the data that is not a readable image: stop with its name (default), or skip and list it",
    )


def open_data(spec: str, classifier: Any, on_error: str) -> Any:
    """``open_dataset`` for the model's classes; stray non-image files are an error (or a warning with report)."""
    from ..data import open_dataset

    dataset = open_dataset(spec, classes=classifier.class_names, on_error=on_error)
    ignored = [Path(p) for p in getattr(dataset, "ignored", [])]
    stray = [str(p) for p in ignored if p.is_file() and not p.name.startswith(".")]
    folders = [str(p) for p in ignored if p.is_dir()]
    if stray:
        shown = ", ".join(stray[:5]) + (f" (+{len(stray) - 5} more)" if len(stray) > 5 else "")
        if on_error == "raise":
            raise CnnlensError(
                f"not an image file in the data folder: {shown}; remove it, or pass --on-error report to skip it"
            )
        warnings.warn(f"skipped {len(stray)} non-image file(s): {shown}", CnnlensWarning, stacklevel=2)
    if folders:
        shown = ", ".join(folders[:5]) + (" ..." if len(folders) > 5 else "")
        warnings.warn(f"folder(s) not among the model's classes, left out: {shown}", CnnlensWarning, stacklevel=2)
    return dataset


def write_metrics_csv(evaluation: Any, path: Path) -> Path:
    """Per-class precision, recall, F1, support and ROC AUC, then the micro/macro/weighted averages."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support", "roc_auc"])
        rows = list(evaluation.report.items()) + list(evaluation.averages.items())
        for name, m in rows:
            auc = evaluation.roc_auc.get(name)
            auc = "" if auc is None or auc != auc else round(float(auc), 6)
            writer.writerow([name, *(round(m[k], 6) for k in ("precision", "recall", "f1")), m["support"], auc])
    return path


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from ..evaluate import evaluate, save_evaluation

    if args.data is not None and args.data_option is not None:
        raise CnnlensError("give the data once: either DATA or --data DATA, not both")
    spec = args.data if args.data is not None else args.data_option
    if spec is None:
        raise CnnlensError(f"no data: pass --data DATA ({DATA_HELP})")
    classifier = load_classifier(args)
    dataset = open_data(spec, classifier, args.on_error)
    try:
        result = evaluate(classifier, dataset, batch_size=args.batch_size, progress=not args.no_progress)
    except CnnlensError as e:
        if args.on_error != "raise" or "cannot be read" not in str(e):
            raise
        raise CnnlensError(f"{e} (or pass --on-error report to skip unreadable files)") from e
    out = Path(args.out)
    save_evaluation(result, out, dataset=dataset, progress=not args.no_progress)
    write_metrics_csv(result, out / "metrics.csv")
    print(result.summary())
    for sample, reason in result.skipped[:10]:
        print(f"skipped {sample}: {reason}")
    print(f"wrote metrics.json, metrics.csv, probabilities.csv, errors.csv and figures (PNG) to {out}")


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
    return data[int(parts[2])][0]


def _cmd_inside(args: argparse.Namespace) -> None:
    from ..inside import save_inside
    from ..models import get_layer

    image = read_image(args.image)
    classifier = load_classifier(args)
    needs_hooks(classifier, "inside")
    layers = names_list(args.layers)
    if layers is not None and not layers:
        raise CnnlensError("--layers is empty; name one or more layers, or leave it out for a spread of convolutions")
    if args.max_layers < 1:
        raise CnnlensError(f"--max-layers must be at least 1; got {args.max_layers}")
    for name in layers or []:
        get_layer(classifier, name)  # unknown names fail before any work, with close matches
    written = save_inside(
        classifier, image, args.out, layers, max_layers=args.max_layers, progress=not args.no_progress
    )
    print((Path(args.out) / "layers.txt").read_text(), end="")
    print(f"wrote {len(written) - 1} figure(s) and layers.txt to {args.out}")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``evaluate`` and ``inside``."""
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a model on a dataset: metrics JSON/CSV, probability tables, figures",
    )
    p.add_argument("data", nargs="?", default=None, metavar="DATA", help=f"same as --data: {DATA_HELP}")
    p.add_argument("--data", dest="data_option", default=None, metavar="DATA", help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", default="out/evaluate", help="output folder (default out/evaluate)")
    add_on_error(p)
    add_model_options(p, "digits_cnn")
    add_run_options(p, batch_default=64, seed=False)
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("inside", parents=[common], help="layer summary, conv filters and feature maps for one image")
    p.add_argument("image", metavar="IMAGE", help="image file, or digits:SPLIT:INDEX (e.g. digits:field:7)")
    p.add_argument(
        "--layers",
        default=None,
        metavar="A,B,...",
        help="comma-separated layer names (default: --max-layers convolutions spread over the depth)",
    )
    p.add_argument(
        "--max-layers",
        type=int,
        default=6,
        metavar="N",
        help="without --layers: how many convolutions to show, first and last included (default 6)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--out", metavar="DIR", default="out/inside", help="output folder (default out/inside)")
    add_model_options(p, "digits_cnn")
    p.set_defaults(func=_cmd_inside)
