"""The ``cnnlens`` command line. Every command has ``--help``; failures exit non-zero with a clear message."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ._errors import CnnlensError

# The demo's methods and options: adaptive IG refines its path until attributions add up to within 1%.
DEMO_METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "guided_backprop": {},
    "integrated_gradients": {"tolerance": 0.01, "max_passes": 1024},
    "deeplift": {},
    "grad_cam": {},
}


def _method_options(methods: list[str], pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``--set key=value`` goes to every method with that option; ``--set method.key=value`` to one method."""
    from . import methods as registry

    params = {m.name: set(m.params) | {"smooth", "smooth_samples", "smooth_std"} for m in registry()}
    options: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise CnnlensError(f"--set expects key=value or method.key=value, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        method, _, key = key.rpartition(".")
        chosen = [method] if method else [m for m in methods if key in params.get(m, ())]
        if not chosen or any(m not in options for m in chosen):
            raise CnnlensError(f"--set {pair}: no chosen method has an option {key!r}")
        for m in chosen:
            options[m][key] = value
    return options


def _target(classifier: Any, text: str | None) -> int | None:
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    names = classifier.class_names or []
    if text in names:
        return names.index(text)
    raise CnnlensError(f"unknown class {text!r}: give a class index or one of the model's class names")


def explain_images(
    model: str, images: list[Any], names: list[str], methods: dict[str, dict[str, Any]], out: Path,
    target: str | None = None, batch_size: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Explain ``images`` with each method; write a PNG panel per image, the raw maps (NPZ) and a JSON summary."""
    import matplotlib.pyplot as plt

    from . import explain, load_model
    from .viz import explanation_panel

    classifier = load_model(model)
    x = classifier.preprocess(images)
    goal = _target(classifier, target)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for method, options in tqdm(methods.items(), desc="methods", unit="method", file=sys.stderr):
        results[method] = explain(classifier, x, method, target=goal, batch_size=batch_size, **options)
    first = next(iter(results.values()))
    probs = first.probabilities
    pixels = classifier.preprocessing.to_pixels(x)
    summary: dict[str, Any] = {"model": model, "images": []}
    for i, name in enumerate(names):
        top = probs[i].topk(min(3, probs.shape[1]))
        tops = [(classifier.class_name(int(j)), float(p)) for p, j in zip(top.values, top.indices, strict=True)]
        explained = classifier.class_name(int(first.target[i]))
        maps = {m: e.attributions[i].cpu() for m, e in results.items()}
        fig = explanation_panel(pixels[i], maps, tops, title=f"{name}: evidence for '{explained}'")
        fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        np.savez_compressed(out / f"{name}.npz", **{m: a.numpy() for m, a in maps.items()})
        summary["images"].append(
            {
                "image": name,
                "explained_class": explained,
                "top3": [{"class": c, "probability": round(p, 4)} for c, p in tops],
                "methods": {
                    m: {
                        "passes_per_batch": e.passes,
                        "seconds_per_batch": round(e.seconds, 3),
                        "completeness_delta": None if e.delta is None else float(e.delta[i]),
                        "relative_delta": None if e.delta is None else _relative(e, i),
                    }
                    for m, e in results.items()
                },
            }
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _relative(e: Any, i: int) -> float:
    """delta / (f(x) - f(baseline)), where f(x) - f(baseline) = sum(attributions) - delta."""
    delta = float(e.delta[i])
    gap = float(e.attributions[i].sum()) - delta
    return delta / gap if gap else float("inf")


def _cmd_methods(args: argparse.Namespace) -> None:
    from .attribution import method_table, methods

    if args.markdown:
        print(method_table())
        return
    for info in methods(args.category):
        print(info)


def _cmd_models(args: argparse.Namespace) -> None:
    from .models import bundled_models

    for name in bundled_models():
        print(name)


def _cmd_explain(args: argparse.Namespace) -> None:
    from .data import load_image

    images = [load_image(p) for p in args.images]
    names = [Path(p).stem for p in args.images]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = _method_options(methods, args.set)
    summary = explain_images(args.model, images, names, options, Path(args.out), args.target, args.batch_size)
    print(f"wrote {len(summary['images'])} panel(s), maps and summary.json to {args.out}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .data import sample_images

    images = sample_images()
    out = Path(args.out)
    print("Explaining EfficientNet-Lite0 (real ImageNet weights, offline) on four scikit-image photos")
    print(f"with {', '.join(DEMO_METHODS)}. Each panel shows which pixels drive the top class.")
    summary = explain_images("efficientnet_lite0", list(images.values()), list(images), DEMO_METHODS, out)
    for item in summary["images"]:
        tops = ", ".join(f"{t['class']} {t['probability']:.0%}" for t in item["top3"])
        deltas = {m: v["relative_delta"] for m, v in item["methods"].items() if v["relative_delta"] is not None}
        shown = ", ".join(f"{m} {abs(d):.2%}" for m, d in deltas.items())
        print(f"  {item['image']:10s} top-3: {tops}")
        print(f"  {'':10s} attributions miss f(x) - f(baseline) by: {shown}")
    print(f"Panels: {out}/<image>.png, raw maps: <image>.npz, numbers: summary.json")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from . import load_model
    from .data import open_dataset
    from .evaluate import evaluate, save_evaluation

    classifier = load_model(args.model)
    dataset = open_dataset(args.data, classes=classifier.class_names, on_error=args.on_error)
    result = evaluate(classifier, dataset, batch_size=args.batch_size)
    save_evaluation(result, args.out, dataset=dataset)
    print(result.summary())
    print(
        f"wrote confusion_matrix/roc/metrics/samples/errors PNGs, probabilities.csv, errors.csv, metrics.json to {args.out}"
    )


def _cmd_inside(args: argparse.Namespace) -> None:
    from . import load_model
    from .data import digits, load_image
    from .inside import save_inside

    classifier = load_model(args.model)
    if args.image.startswith("digits:"):  # digits:SPLIT:INDEX, e.g. digits:field:7
        _, split, index = (args.image.split(":") + ["0"])[:3]
        data = digits(split)
        if not index.isdigit() or int(index) >= len(data):
            raise CnnlensError(f"{args.image!r}: expected digits:SPLIT:INDEX with INDEX in 0..{len(data) - 1}")
        image = data[int(index)][0]
    else:
        image = load_image(args.image)
    layers = [name.strip() for name in args.layers.split(",") if name.strip()] if args.layers else None
    written = save_inside(classifier, image, args.out, layers)
    print((Path(args.out) / "layers.txt").read_text(), end="")
    print(f"wrote {len(written) - 1} figure(s) and layers.txt to {args.out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnlens", description="See inside CNN image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("methods", help="list the attribution methods (from the registry)")
    p.add_argument("--category", default=None, help="only this category (e.g. gradient)")
    p.add_argument("--markdown", action="store_true", help="print the README's method table")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=_cmd_models)
    p = sub.add_parser("explain", help="explain images with one or more methods: PNG panels, NPZ maps, JSON")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default="efficientnet_lite0", help="bundled model name (see `cnnlens models`)")
    p.add_argument("--methods", default="saliency,integrated_gradients", help="comma-separated method names")
    p.add_argument("--target", default=None, help="class index or name to explain (default: predicted class)")
    p.add_argument("--batch-size", type=int, default=None, help="most model inputs per forward pass")
    p.add_argument("--set", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="method option, repeatable")
    p.add_argument("--out", default="out/explain", help="output folder")
    p.set_defaults(func=_cmd_explain)
    p = sub.add_parser("evaluate", help="evaluate a model on a dataset: metrics, figures, probability tables")
    p.add_argument("data", help="digits:test|train|field, a folder with one sub-folder per class, or a path,label CSV")
    p.add_argument("--model", default="digits_cnn", help="bundled model name (see `cnnlens models`)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument(
        "--on-error", choices=["report", "raise"], default="report", help="unreadable files: skip and list, or stop"
    )
    p.add_argument("--out", default="out/evaluate", help="output folder")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("inside", help="layer summary, conv filters and feature maps for one image")
    p.add_argument("image", help="image file, or digits:SPLIT:INDEX (e.g. digits:field:7)")
    p.add_argument("--model", default="digits_cnn", help="bundled model name (see `cnnlens models`)")
    p.add_argument("--layers", default=None, help="comma-separated layer names (default: every Conv2d)")
    p.add_argument("--out", default="out/inside", help="output folder")
    p.set_defaults(func=_cmd_inside)
    p = sub.add_parser("demo", help="explain the bundled model on the bundled photos (offline)")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CnnlensError as err:
        print(f"cnnlens: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
