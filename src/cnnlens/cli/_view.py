"""``cnnlens view``: the local web app of a store (or of a data set, predicted into a new store as it is served)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.errors import CnnlensError
from ._data_flags import DATA_HELP, add_class_map, class_map, open_data
from ._model_flags import (
    DEFAULT_MODEL,
    add_model_options,
    check_digits_input,
    load_classifier,
    model_name,
    positive_int,
)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port); got {value}")
    return value


def _given_model(args: argparse.Namespace) -> bool:
    return any(
        getattr(args, k) is not None for k in ("model", "arch", "classes", "input_size", "resize", "mean", "std")
    )


def _store_model(store: Any, args: argparse.Namespace) -> Any:
    """The model given with a STORE, which must be the store's own."""
    try:
        return store.model(load_classifier(args))
    except CnnlensError as err:
        if "weights differ" not in str(err):
            raise
        spec = store.manifest["model"]
        raise CnnlensError(
            f"--model {args.model or DEFAULT_MODEL} is not the model the store {args.store} was made with "
            f"({spec['name']}, its weights differ); leave --model out to use the store's own model"
            + (
                ""
                if spec.get("source")
                else " (or give that very model: it was given to cnnlens run as a Python object)"
            )
        ) from None


def _cmd_view(args: argparse.Namespace) -> None:
    from ..app import serve

    def ready(url: str) -> None:
        print(f"cnnlens view: serving {where} at {url}  (Ctrl+C stops it)", flush=True)

    common = {
        "host": args.host, "port": args.port, "max_passes": args.max_passes, "batch_size": args.batch_size,
        "ready": ready, "allow_hosts": args.allow_host,
    }  # fmt: skip
    if args.store is not None:
        from ..store import open_store

        if args.out is not None:
            raise CnnlensError("--out names the store that --data creates; with a STORE leave it out")
        store = open_store(args.store)
        model = None
        if _given_model(args):  # checked against the store's weights now, not at first use
            model = _store_model(store, args)
        where = f"the store {args.store}"
        serve(store, model=model, data=args.data, **common)
        print("cnnlens view: stopped")
        return
    if args.data is None:
        raise CnnlensError("give a STORE (made by cnnlens run), or --data DATA to predict a data set into a new store")
    from ..app import start_predictions
    from ..store import Sources, absolute

    check_digits_input(args, [args.data], "--data")
    classifier = load_classifier(args)
    data = absolute(args.data)  # ids are absolute paths: the store reopens its data from any folder
    dataset = open_data(data, classifier, args)
    out = args.out or "out/view"
    jobs = start_predictions(
        classifier, dataset, out, sources=Sources(model_name(args), data, args.arch, class_map(args)),
        batch_size=args.batch_size, max_passes=args.max_passes,
    )  # fmt: skip
    where = f"{args.data} (predicted into the store {out})"
    try:
        serve(out, model=classifier, data=dataset, jobs=jobs, **common)
        print("cnnlens view: stopped")
    finally:
        if jobs.cancel() is not None:
            print("cnnlens view: stopping the predictions (those made are kept)", file=sys.stderr)
        jobs.wait(60)


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``view``."""
    p = sub.add_parser(
        "view",
        parents=[common],
        help="browse a store's predictions and explanations in a local web app (explain more on demand)",
        description="Serve a local web app (on 127.0.0.1 unless --host says otherwise) to browse a store made by "
        "cnnlens run: the overview with the confusion matrix, an image grid, every stored map of one image, any "
        "method computed on demand (one at a time) and stored, and the confused pairs. With --data instead of a "
        "STORE, the data set is predicted into a new store (--out) while the app is served.",
    )
    p.add_argument("store", nargs="?", default=None, metavar="STORE", help="a store folder (from cnnlens run)")
    p.add_argument("--data", default=None, metavar="DATA", help=f"{DATA_HELP}; with a STORE: where its images are now")
    p.add_argument(
        "--out", default=None, metavar="STORE", help="with --data: the store to create or resume (default out/view)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only); any other than this machine's own asks "
        "for an access token, printed once in the URL to open (http://HOST:PORT/?token=...)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (a host name of this machine; repeatable); others are refused "
        "(421), so that no web page elsewhere reaches the app by DNS rebinding",
    )
    p.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument(
        "--max-passes",
        type=positive_int,
        default=100_000,
        metavar="N",
        help="size limit: most model inputs one on-demand computation may evaluate (default 100000)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=None, metavar="N", help="most inputs per model pass (automatic)"
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "report"],
        default="raise",
        help="with --data: a file found unusable while the data are listed stops the command (default) or is "
        "skipped and listed",
    )
    add_class_map(p)
    add_model_options(
        p,
        default=f"with a STORE: the store's own model, reopened from it; give --model only where it cannot be "
        f"(a model given to cnnlens run as a Python object, or a model file since moved), and it must be that model. "
        f"With --data: default {DEFAULT_MODEL}, the ImageNet photo classifier; digits_cnn for the bundled digits",
    )
    p.set_defaults(func=_cmd_view)
