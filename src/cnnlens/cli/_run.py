"""``cnnlens run``: explain a whole data set into a resumable store (``cnnlens.run``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import CnnlensError
from ._data_flags import DATA_HELP, add_class_map, class_map, open_data
from ._explain import method_options
from ._model_flags import (
    add_model_options,
    add_run_options,
    check_digits_input,
    load_classifier,
    method_names,
    model_name,
    names_list,
    positive_int,
)
from ._quality import metric_options


def _cmd_run(args: argparse.Namespace) -> None:
    from ..store import Sources, absolute, run_loaded

    methods = method_names(args.methods) or []
    options = method_options(methods, args.set)  # names and options are checked before the model is loaded
    if args.metrics is None and args.metric_set:
        raise CnnlensError("--metric-set sets options of the --metrics chosen; give --metrics too")
    metrics = None if args.metrics is None else metric_options(names_list(args.metrics), args.metric_set)
    if args.address is not None and args.backend != "ray":
        raise CnnlensError("--address names a Ray cluster; give it with --backend ray")
    if args.workers is not None and args.backend != "ray":
        raise CnnlensError("--workers sizes the Ray actor pool; give it with --backend ray")
    check_digits_input(args, [args.data], "--data")
    classifier = load_classifier(args)
    data = absolute(args.data)  # ids are absolute paths: the store reopens its data from any folder
    dataset = open_data(data, classifier, args)  # images that cannot be decoded become failed rows
    summary = run_loaded(
        classifier,
        dataset,
        options,
        sources=Sources(model_name(args), data, args.arch, class_map(args)),
        out=args.out,
        metrics=metrics,
        explain=args.explain,
        top_k=args.top_k,
        downsample=args.downsample,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        seed=args.seed,
        backend=args.backend,
        address=args.address,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(summary)
    print(f"store: {args.out}")
    print(f"next: cnnlens view {args.out}  (browse it)   or   cnnlens report --store {args.out}  (the HTML report)")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``run``."""
    p = sub.add_parser(
        "run",
        parents=[common],
        help="explain a whole data set into a resumable store (Parquet tables, Zarr maps, a manifest)",
        description="Predict, explain (every method) and score (every metric) each image of the data, writing the "
        "results shard by shard to the store folder. Run the same command again to resume after an interruption; "
        "a store made with other settings is refused.",
    )
    p.add_argument("--data", required=True, metavar="DATA", help=DATA_HELP)
    p.add_argument("--methods", required=True, metavar="A,B,...", help="comma-separated method names")
    p.add_argument(
        "--metrics", default=None, metavar="A,B,...", help="comma-separated quality metrics scored per image (none)"
    )
    p.add_argument("--out", required=True, metavar="STORE", help="the store folder (created, or resumed)")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="method option, repeatable")
    p.add_argument(
        "--metric-set", action="append", default=[], metavar="METRIC.KEY=VALUE", help="metric option, repeatable"
    )
    p.add_argument(
        "--explain",
        choices=["predicted", "label", "both"],
        default="predicted",
        help="class explained: the predicted one (default), the true label, or both (the label's where it differs)",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        metavar="K",
        help="class probabilities kept (all up to 100, else 10)",
    )
    p.add_argument(
        "--downsample", type=positive_int, default=None, metavar="F", help="keep maps averaged over F x F pixel blocks"
    )
    p.add_argument("--shard-size", type=positive_int, default=32, metavar="N", help="images per shard (default 32)")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="where shards are computed")
    p.add_argument("--address", default=None, metavar="ADDRESS", help="Ray cluster address (default: a local instance)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N", help="Ray actors (default one per CPU)")
    p.add_argument(
        "--on-error",
        choices=["raise", "report"],
        default="raise",
        help="a file found unusable while the data are listed (not an image, a broken symlink, a folder that is no "
        "class): stop with its name (default), or skip it and list it in the store's manifest; an image that cannot "
        "be decoded during the run is a failed row either way",
    )
    add_class_map(p)
    add_model_options(p)
    add_run_options(p)
    p.set_defaults(func=_cmd_run)
