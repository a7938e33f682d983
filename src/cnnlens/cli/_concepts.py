"""``cnnlens concepts``: what a class means to the model, as image regions (gallery, JSON, images in concepts)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.files import output_folder
from ._data_flags import DATA_HELP, add_class_map, add_on_error, open_data, read_image
from ._model_flags import (
    add_model_options,
    add_run_options,
    check_digits_input,
    load_classifier,
    model_name,
    needs_hooks,
)


def _cmd_concepts(args: argparse.Namespace) -> None:
    check_digits_input(args, [args.data, *args.image], "--data")
    images = [read_image(text) for text in args.image]
    with output_folder(args.out, "concepts", model=model_name(args), data=args.data, class_=args.class_) as folder:
        from ..concepts import extract, save_concepts

        classifier = load_classifier(args)
        needs_hooks(classifier, "concepts")
        dataset = open_data(args.data, classifier, args)
        found = extract(
            classifier,
            dataset,
            args.class_,
            layer=args.layer,
            n_concepts=args.concepts,
            images=args.images,
            designs=args.designs,
            importance_images=args.importance_images,
            batch_size=args.batch_size or 64,
            seed=args.seed,
            progress=not args.no_progress,
        )
        save_concepts(found, folder, images)
    print(f"concepts of class {found.class_name} at layer {found.layer} from {len(found.inputs)} images")
    print(
        f"fidelity {found.fidelity:.3f} (R^2 of class scores rebuilt from the concepts), agreement {found.agreement:.2f}"
    )
    for c in range(found.n_concepts):
        print(f"  concept {c}: importance {found.importance[c]:.3f}")
    extra = f" and {len(images)} image_<i>.png" if images else ""
    print(f"wrote gallery.png, concepts.json{extra} to {Path(args.out)}")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``concepts``."""
    p = sub.add_parser(
        "concepts",
        parents=[common],
        help="the concepts a class means to the model: typical image parts, their importance, where they are",
        description="Factorize a layer's activations on the images of one class (NMF, as CRAFT and ICE do), rank the "
        "concepts by total Sobol indices of the class score, and write a gallery (typical crops and importance "
        "bars per concept), concepts.json, and for each --image where each concept is in it.",
    )
    p.add_argument("--data", required=True, metavar="DATA", help=DATA_HELP)
    p.add_argument("--class", dest="class_", required=True, metavar="NAME", help="class name or index")
    p.add_argument(
        "--layer", default=None, metavar="L", help="layer with non-negative outputs (default: the last before pooling)"
    )
    p.add_argument("--concepts", type=int, default=10, metavar="K", help="number of concepts (default 10)")
    p.add_argument("--images", type=int, default=200, metavar="N", help="most class images used (default 200)")
    p.add_argument(
        "--designs", type=int, default=1024, metavar="N", help="Sobol designs per image, a power of 2 (default 1024)"
    )
    p.add_argument(
        "--importance-images", type=int, default=64, metavar="N", help="class images importance uses (default 64)"
    )
    p.add_argument(
        "--image", action="append", default=[], metavar="IMAGE", help="an image to show in concepts (repeatable)"
    )
    p.add_argument("--out", metavar="DIR", default="out/concepts", help="output folder (default out/concepts)")
    add_on_error(p)
    add_class_map(p)
    add_model_options(p)
    add_run_options(p)
    p.set_defaults(func=_cmd_concepts)
