"""``cnnlens evaluate`` (metrics and figures for a dataset, or the top classes of unlabelled images) and
``cnnlens inside`` (layers of one image)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError
from ..core.files import atomic_open, output_folder
from ._data_flags import DATA_HELP, add_class_map, add_on_error, open_data, read_image
from ._model_flags import (
    add_model_options,
    add_run_options,
    check_digits_input,
    check_sizes,
    load_classifier,
    model_name,
    names_list,
    needs_hooks,
)


def write_metrics_csv(evaluation: Any, path: Path) -> Path:
    """Per-class precision, recall, F1, support and ROC AUC, then the micro/macro/weighted averages."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support", "roc_auc"])
        rows = list(evaluation.report.items()) + list(evaluation.averages.items())
        for name, m in rows:
            auc = evaluation.roc_auc.get(name)
            auc = "" if auc is None or auc != auc else round(float(auc), 6)
            writer.writerow([name, *(round(m[k], 6) for k in ("precision", "recall", "f1")), m["support"], auc])
    return path


def _data_spec(args: argparse.Namespace) -> str:
    if args.data is not None and args.data_option is not None:
        raise CnnlensError("give the data once: either DATA or --data DATA, not both")
    spec = args.data if args.data is not None else args.data_option
    if spec is None:
        raise CnnlensError(f"no data: pass --data DATA ({DATA_HELP})")
    return str(spec)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    spec = _data_spec(args)
    check_digits_input(args, [spec], "--data")
    if args.unlabelled:
        from ._predict import predict_unlabelled

        predict_unlabelled(args, spec)
        return
    out = Path(args.out)
    with output_folder(out, "evaluate", model=model_name(args), data=spec) as folder:  # held before any work
        from ..evaluation import evaluate, save_evaluation

        classifier = load_classifier(args)
        dataset = open_data(spec, classifier, args)
        result = evaluate(classifier, dataset, batch_size=args.batch_size, progress=not args.no_progress)
        save_evaluation(result, folder, dataset=dataset, progress=not args.no_progress)
        write_metrics_csv(result, folder.file("metrics.csv"))
    print(result.summary())
    for sample, reason in result.skipped[:10]:
        print(f"skipped {sample}: {reason}")
    print(f"wrote metrics.json, metrics.csv, probabilities.csv, errors.csv and figures (PNG) to {out}")


def _cmd_inside(args: argparse.Namespace) -> None:
    check_digits_input(args, [args.image], "IMAGE")
    layers = names_list(args.layers)
    if layers is not None and not layers:
        raise CnnlensError("--layers is empty; name one or more layers, or leave it out for a spread of convolutions")
    if args.max_layers < 1:
        raise CnnlensError(f"--max-layers must be at least 1; got {args.max_layers}")
    image = read_image(args.image)
    out = Path(args.out)
    with output_folder(out, "inside", model=model_name(args), image=args.image) as folder:
        from ..inside import save_inside
        from ..models import get_layer

        classifier = load_classifier(args)
        needs_hooks(classifier, "inside")
        for name in layers or []:
            get_layer(classifier, name)  # unknown names fail before any work, with close matches
        check_sizes(classifier, {args.image: image.size})
        written = save_inside(
            classifier, image, folder, layers, max_layers=args.max_layers, progress=not args.no_progress
        )
    print((out / "layers.txt").read_text(), end="")
    print(f"wrote {len(written) - 1} figure(s) and layers.txt to {out}")


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
    add_class_map(p)
    p.add_argument(
        "--unlabelled",
        action="store_true",
        help="the folder's images have no labels (folder names need not be classes): list each image's top-5 "
        "classes (predictions.csv, predictions.json) instead of scoring them",
    )
    add_model_options(p)
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
    add_model_options(p)
    p.set_defaults(func=_cmd_inside)
