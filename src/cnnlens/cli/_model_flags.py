"""Options shared by the commands that take a model: which model, its classes and preprocessing, device, batch."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import CnnlensError, CnnlensWarning

if TYPE_CHECKING:
    from ..models import Classifier


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def names_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; ``None`` stays ``None``."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


def method_names(text: str | None, option: str = "--methods") -> list[str] | None:
    """``option``'s comma-separated method names (``None`` stays ``None``), checked before any model is loaded:
    an empty list, a repeated or an unknown name is an error."""
    from ..attribution import get_method

    names = names_list(text)
    if names is None:
        return None
    if not names:
        raise CnnlensError(f"{option} is empty; name one or more methods (see `cnnlens methods`)")
    twice = repeated(names)
    if twice:
        raise CnnlensError(f"{option} names {', '.join(twice)} more than once")
    for name in names:
        get_method(name)  # unknown names: a clear error with close matches
    return names


def add_run_options(p: argparse.ArgumentParser, *, batch_default: int | None = None, seed: bool = True) -> None:
    """``--batch-size``, ``--seed`` and ``--no-progress``."""
    what = "automatic" if batch_default is None else str(batch_default)
    p.add_argument(
        "--batch-size", type=positive_int, default=batch_default, metavar="N", help=f"most inputs per pass ({what})"
    )
    if seed:
        p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed for sampling methods (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


DEFAULT_MODEL = "efficientnet_lite0"
"""The model of every command when ``--model`` is not given: the bundled ImageNet photo classifier."""


def add_model_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--model`` and everything that says how to load and feed it. ``default``: what ``--model``'s help says
    is used without it (default: the bundled photo classifier)."""
    g = p.add_argument_group("model options")
    default = default or f"default {DEFAULT_MODEL}, the ImageNet photo classifier; digits_cnn for the bundled digits"
    g.add_argument(
        "--model",
        default=None,
        metavar="M",
        help=f"bundled name (see `cnnlens models`), torchvision:NAME or timm:NAME (e.g. torchvision:resnet50, "
        f"timm:convnext_tiny; preprocessing and class names from their weights), TorchScript file or state-dict file "
        f"with --arch ({default}). A bundled name wins over a file of that name; write ./NAME for the file",
    )
    g.add_argument(
        "--weights",
        default=None,
        metavar="W",
        help="weights of a torchvision:/timm: model: DEFAULT (default), a weights name (torchvision: e.g. "
        "IMAGENET1K_V2; timm: a tag, e.g. ra2_in1k) read from the folder the library downloads to (never "
        "downloaded), a file, or none for random weights",
    )
    g.add_argument(
        "--arch",
        default=None,
        metavar="PACKAGE.MODULE:CLASS",
        help="class to build for a state-dict file (importable, or a module in the current folder)",
    )
    g.add_argument(
        "--num-classes", type=positive_int, default=None, metavar="N", help="passed to --arch as num_classes="
    )
    g.add_argument(
        "--classes",
        default=None,
        metavar="FILE|A,B,...",
        help="class names: a text file (one per line) or a comma-separated list",
    )
    g.add_argument(
        "--input-size",
        default=None,
        metavar="N|HxW",
        help="model input size, e.g. 224 or 224x224; images are resized straight to it unless --resize is given",
    )
    g.add_argument(
        "--resize", type=positive_int, default=None, metavar="N", help="resize the short side to N, then center-crop"
    )
    g.add_argument("--mean", default=None, metavar="R,G,B", help="normalization mean of [0, 1] pixels")
    g.add_argument("--std", default=None, metavar="R,G,B", help="normalization std of [0, 1] pixels")
    g.add_argument("--device", default="cpu", metavar="DEV", help="cpu, cuda or cuda:N (default cpu)")


def read_classes(text: str) -> list[str]:
    """Class names from a text file (one per line) or a comma-separated list."""
    path = Path(text)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise CnnlensError(f"--classes: cannot read {text!r} as UTF-8 text ({e})") from e
        names = [line.strip() for line in lines if line.strip()]
    elif "," in text:
        names = [part.strip() for part in text.split(",")]
        if not all(names):
            raise CnnlensError(f"--classes {text!r} has an empty name; separate names by single commas")
    else:
        raise CnnlensError(
            f"--classes {text!r}: no such file, and not a comma-separated list; "
            "give a text file with one class name per line or names like cat,dog"
        )
    if not names:
        raise CnnlensError(f"--classes: {text!r} holds no class names")
    twice = repeated(names)
    if twice:
        raise CnnlensError(f"--classes names {', '.join(twice)} more than once; each class needs its own name")
    return names


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"32x48"`` -> (32, 48) (height x width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise CnnlensError(
            f"--input-size expects N or HxW with positive whole numbers (e.g. 224 or 224x224); got {text!r}"
        )
    return values[0], values[1]


def parse_triple(text: str, option: str) -> tuple[float, float, float]:
    """``"0.5"`` or ``"0.485,0.456,0.406"`` -> three floats (one per RGB channel)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise CnnlensError(f"{option} expects numbers separated by commas; got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise CnnlensError(f"{option} expects 3 values (one per RGB channel) or 1 for all; got {len(values)}: {text!r}")
    return values[0], values[1], values[2]


def resolve_device(text: str) -> Any:
    """A ``torch.device`` that exists on this machine; a clear error otherwise."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise CnnlensError(f"--device {text!r} is not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise CnnlensError(
                f"--device {text}: CUDA is not available here (torch {torch.__version__}, {build}, "
                "or no GPU/driver); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CnnlensError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise CnnlensError(f"--device {text}: Apple MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise CnnlensError(f"--device {text}: unsupported device type {device.type!r}; use cpu, cuda or cuda:N")
    return device


def _preprocessing(args: argparse.Namespace, current: Any, name: str) -> Any:
    from ..models import Preprocessing

    changes: dict[str, Any] = {}
    if args.input_size is not None:
        changes["input_size"] = parse_size(args.input_size)
        changes["resize"] = args.resize  # a new input size drops the model's own resize unless --resize is given
    elif args.resize is not None:
        changes["resize"] = args.resize
    if args.mean is not None:
        changes["mean"] = parse_triple(args.mean, "--mean")
    if args.std is not None:
        changes["std"] = parse_triple(args.std, "--std")
        if min(changes["std"]) <= 0:
            raise CnnlensError(f"--std values must be positive; got {args.std!r}")
    if current is None and "input_size" in changes and ("mean" not in changes or "std" not in changes):
        warnings.warn(
            f"--input-size without --mean and --std: the model {name!r} gets pixels in [0, 1] (mean 0, std 1 where "
            "not given); if it was trained on normalized pixels (ImageNet: --mean 0.485,0.456,0.406 --std "
            "0.229,0.224,0.225) its answers and maps are wrong. Give both (--mean 0 --std 1 for raw pixels)",
            CnnlensWarning,
            stacklevel=2,
        )
    if not changes:
        if current is None:
            raise CnnlensError(
                f"the model {name!r} carries no preprocessing: give --input-size (e.g. 224 or 224x224) and, "
                "if it was trained on normalized pixels, --mean and --std"
            )
        return current
    if current is None:
        if "input_size" not in changes:
            raise CnnlensError(f"the model {name!r} carries no preprocessing: --input-size is needed too")
        fields: dict[str, Any] = {"resize": None, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    else:
        fields = dataclasses.asdict(current)
    fields.update(changes)
    return Preprocessing(**fields)


def _check_outputs(classifier: Any, name: str) -> None:
    """One forward pass on a blank input: the model must return (1, K) logits, K matching the class names."""
    import torch

    from ..core.model_guard import frozen

    size = classifier.preprocessing.input_size
    try:
        with frozen(classifier.module), torch.no_grad():
            out = classifier.module(torch.zeros((1, 3, *size), device=classifier.device))
    except RuntimeError as e:
        raise CnnlensError(
            f"the model {name!r} fails on a (1, 3, {size[0]}, {size[1]}) input ({_last_line(e)}); check --input-size"
        ) from e
    try:
        classifier.check_logits(out)
    except CnnlensError as e:
        raise CnnlensError(f"the model {name!r}: {e}") from e


@contextmanager
def _cwd_on_path(needed: bool) -> Iterator[None]:
    """``--arch`` modules are looked up in the current folder too, as with ``python -m`` (sys.path restored)."""
    if not needed or "" in sys.path or os.getcwd() in sys.path:
        yield
        return
    sys.path.insert(0, os.getcwd())
    try:
        yield
    finally:
        sys.path.remove(os.getcwd())


def _last_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[-1].strip() if lines else type(err).__name__


def model_name(args: argparse.Namespace) -> str:
    """``--model``, or the default model."""
    return str(args.model) if args.model is not None else DEFAULT_MODEL


def check_digits_input(args: argparse.Namespace, texts: list[str], option: str) -> None:
    """The bundled ``digits:`` data are 32x32 digits for ``digits_cnn``: with the default (photo) model, say so
    instead of running it on them. Checked before any model is loaded."""
    digits = [t for t in texts if t.startswith("digits:") and not Path(t).exists()]
    if digits and args.model is None:
        raise CnnlensError(
            f"{option} {digits[0]} is the bundled 32x32 handwritten digits, made for the digits_cnn model; the "
            f"default model {DEFAULT_MODEL} is an ImageNet photo classifier. Pass --model digits_cnn"
        )


def check_sizes(classifier: Any, sizes: dict[str, tuple[int, int]]) -> None:
    """Warn when images are far from the model's input size (a photo for a 32x32 digits model, a thumbnail for a
    224x224 photo model): a sign of the wrong model. ``sizes``: name -> (width, height)."""
    height, width = classifier.preprocessing.input_size
    side = min(height, width)
    odd = {n: s for n, s in sizes.items() if (side <= 64 and min(s) >= 4 * side) or 4 * min(s) <= side}
    if odd:
        name, (w, h) = next(iter(odd.items()))
        warnings.warn(
            f"{len(odd)} of {len(sizes)} image(s) are far from the {height}x{width} input of {classifier.name} "
            f"(e.g. {name}: {w}x{h} pixels); is it the right model? (--model; {DEFAULT_MODEL} takes photos, "
            "digits_cnn 32x32 digits)",
            CnnlensWarning,
            stacklevel=2,
        )


def load_classifier(args: argparse.Namespace) -> Classifier:
    """The ``Classifier`` the model options describe, on the chosen device, ready to take images."""
    import torch

    from ..models import bundled_models, load_model

    model = model_name(args)
    device = resolve_device(args.device)
    names = read_classes(args.classes) if args.classes is not None else None
    zoo = model.startswith(("torchvision:", "timm:"))
    if args.arch is None and args.num_classes is not None and model not in bundled_models() and not zoo:
        raise CnnlensError("--num-classes is only used with --arch (to build the class for a state-dict file)")
    given = getattr(args, "weights", None)  # passed on only when given: load_model's default otherwise
    weights = {} if given is None else {"weights": None if given.lower() == "none" else given}
    with _cwd_on_path(args.arch is not None):
        classifier = load_model(
            model, spec=args.arch, class_names=names, num_classes=args.num_classes, map_location=device, **weights
        )
    classifier.preprocessing = _preprocessing(args, classifier.preprocessing, model)
    classifier.to(device)
    if model not in bundled_models():
        _check_outputs(classifier, model)
    torch.manual_seed(getattr(args, "seed", 0))
    return classifier


# Methods that rewrite the model's activations through forward hooks (CAMs hook a layer too): on a TorchScript
# module no hook fires, so they would silently return another method's result (measured on tests/_tiny_models.py).
def needs_hooks(classifier: Classifier, command: str) -> None:
    """TorchScript modules take no forward hooks, which ``command`` needs to look inside the model. (Single
    methods that cannot run on TorchScript refuse by themselves, with the library's own error.)"""
    import torch

    if isinstance(classifier.module, torch.jit.ScriptModule):
        raise CnnlensError(
            f"cnnlens {command} looks inside the model with forward hooks, which TorchScript models do not support; "
            "save the weights as a state dict and pass --model FILE --arch package.module:Class"
        )


def parse_target(classifier: Classifier, text: str | None) -> int | None:
    """``--target``: a class index or one of the model's class names (``None``: the predicted class)."""
    if text is None:
        return None
    names = classifier.class_names or []
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < classifier.num_classes:
            raise CnnlensError(f"unknown class {index}: the model has classes 0..{classifier.num_classes - 1}")
        return index
    shown = f" (e.g. {', '.join(names[:5])})" if names else " (this model has no class names: use an index)"
    raise CnnlensError(f"unknown class {text!r}: give a class index or one of the model's class names{shown}")
