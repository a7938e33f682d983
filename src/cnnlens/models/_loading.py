"""`load_model`: bundled names, ``torchvision:``/``timm:`` names, nn.Module instances, TorchScript files and
state-dict files."""

from __future__ import annotations

import difflib
import importlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlens.core.errors import CnnlensError, CnnlensWarning, say
from cnnlens.models._bundled import _REGISTRY, _load_bundled, bundled_models
from cnnlens.models._classifier import Classifier, Preprocessing
from cnnlens.models._zoo import PREFIXES as ZOO_PREFIXES


def _spec_hint() -> str:
    return say("spec='package.module:ClassName'", "--arch package.module:ClassName")


def load_model(
    name_or_path: str | os.PathLike | nn.Module,
    *,
    spec: str | None = None,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    weights: str | os.PathLike[str] | None = "DEFAULT",
) -> Classifier:
    """Load a classifier (in eval mode) from a bundled name, a library's model name, a module, a TorchScript or a
    state-dict file.

    A state-dict file needs ``spec="package.module:Class"``; the class is built with no arguments,
    or with ``num_classes=`` when given. ``preprocessing`` and ``class_names`` override the defaults.

    ``"torchvision:NAME"`` (e.g. ``"torchvision:resnet50"``) and ``"timm:NAME"`` (e.g. ``"timm:convnext_tiny"``,
    or ``"timm:convnext_tiny.fb_in1k"`` with a tag) are built by that library (``pip install "cnnlens[torchvision]"``
    or ``"cnnlens[timm]"``), with the input size, resize, center crop, mean/std and class names of the weights'
    metadata (torchvision's weights enum, timm's pretrained config and ``ImageNetInfo``). ``weights``:
    ``"DEFAULT"`` or a weights name (torchvision: an enum member such as ``"IMAGENET1K_V2"``; timm: a tag such as
    ``"ra2_in1k"``), read from the cache folder the library downloads to (see `cnnlens.models._zoo`; nothing is
    ever downloaded: a missing file raises a `CnnlensError` that names the file and where to put it); a path to a
    weights file (a state dict, or a checkpoint holding one under ``"state_dict"``/``"model_state_dict"``; torchvision's
    own file under its own name counts as those weights); or ``None`` for random weights (with a warning: the maps
    then explain noise). ``weights`` is only for these names.
    """
    if isinstance(name_or_path, str) and name_or_path.startswith(ZOO_PREFIXES):
        return _from_zoo(name_or_path, weights, spec, preprocessing, class_names, num_classes, map_location)
    if weights != "DEFAULT":
        raise CnnlensError(
            f"{say('weights=', '--weights')} is for models named torchvision:NAME or timm:NAME; "
            + say(
                "for a state-dict file pass the file itself with spec=.",
                "for a state-dict file give --model FILE --arch.",
            )
        )
    prep = _as_preprocessing(preprocessing)
    names = None if class_names is None else [str(c) for c in class_names]
    if names is not None and num_classes is not None and len(names) != num_classes:
        raise CnnlensError(
            f"{say('num_classes=', '--num-classes ')}{num_classes} but {len(names)} class names were given; "
            "make them agree."
        )

    if isinstance(name_or_path, nn.Module):
        if spec is not None:
            raise CnnlensError("spec is only used with state-dict files; drop it when passing a module.")
        name_or_path.eval()
        return Classifier(name_or_path, prep, names, type(name_or_path).__name__)

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise CnnlensError(
            f"load_model takes a bundled model name, a file path or an nn.Module; got {type(name_or_path).__name__}."
        )
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:  # a bare name: the bundled model wins
        if path.exists():
            warnings.warn(
                f"{name_or_path!r} is a bundled model; the {'folder' if path.is_dir() else 'file'} of that name in "
                f"the current folder is not used; to load the file, "
                + say(f"pass './{name_or_path}' or Path({name_or_path!r})", f"write --model ./{name_or_path}"),
                CnnlensWarning,
                stacklevel=2,
            )
        return _bundled(name_or_path, spec, prep, names, num_classes, map_location)
    if not path.exists():
        raise CnnlensError(_not_found_message(name_or_path, path))
    if path.is_dir():
        raise CnnlensError(f"{str(path)!r} is a directory; pass a TorchScript or state-dict file.")

    if _is_torchscript(path):
        if spec is not None:
            raise CnnlensError(
                f"{str(path)!r} is a TorchScript file, which needs no {say('spec; drop spec=', 'class; drop --arch')}."
            )
        try:
            with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; loading still works
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
                module = torch.jit.load(str(path), map_location=map_location)
        except RuntimeError as e:
            raise CnnlensError(f"Could not load the TorchScript file {str(path)!r}: {e}") from e
        module.eval()
        return Classifier(module, prep, names, path.stem)

    state = _read_state_dict(path, map_location)
    if spec is None:
        raise CnnlensError(
            f"{str(path)!r} holds a state dict (weights only), which does not say how to build the model. "
            f"Pass {_spec_hint()} naming the model class (importable, constructible with no arguments "
            f"or with {say('num_classes=', '--num-classes')}), or save the model as TorchScript "
            "(torch.jit.script(model).save(path))."
        )
    module = _build_from_spec(spec, num_classes)
    _load_state_strict(module, state, path)
    module.to(map_location).eval()
    return Classifier(module, prep, names, path.stem)


def _from_zoo(
    name: str,
    weights: str | os.PathLike[str] | None,
    spec: str | None,
    preprocessing: Preprocessing | Mapping[str, Any] | None,
    class_names: Sequence[str] | None,
    num_classes: int | None,
    map_location: str | torch.device,
) -> Classifier:
    """``torchvision:NAME`` or ``timm:NAME``, with the caller's preprocessing and class names over the metadata's."""
    from cnnlens.models._zoo import load_timm, load_torchvision

    if spec is not None:
        raise CnnlensError(f"{name!r} names its architecture; drop {say('spec=', '--arch')}.")
    prep = _as_preprocessing(preprocessing)
    library, _, arch = name.partition(":")
    load = load_torchvision if library == "torchvision" else load_timm
    clf = load(
        arch, weights, num_classes=num_classes, map_location=map_location, read=_read_weights, fit=_load_state_strict
    )
    return _given(clf, name, None if class_names is None else [str(c) for c in class_names], prep)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a PyTorch file (`_read_state_dict`), on the CPU."""
    if path.suffix != ".safetensors":
        return _read_state_dict(path, "cpu")
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise CnnlensError(f"{str(path)!r} is a safetensors file; pip install safetensors to read it ({e})") from e
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a bad file
        raise CnnlensError(f"Could not read {str(path)!r} as a safetensors file ({e}); is it corrupt?") from e


def _as_preprocessing(p: Preprocessing | Mapping[str, Any] | None) -> Preprocessing | None:
    if p is None or isinstance(p, Preprocessing):
        return p
    if isinstance(p, Mapping):
        allowed = [f.name for f in fields(Preprocessing)]
        unknown = [k for k in p if k not in allowed]
        if unknown:
            raise CnnlensError(f"Unknown preprocessing field(s) {unknown}; valid fields: {', '.join(allowed)}.")
        try:
            return Preprocessing(**{"resize": None, **p})  # as on the command line, resize is optional
        except TypeError as e:
            raise CnnlensError(f"Incomplete preprocessing dict ({e}); valid fields: {', '.join(allowed)}.") from e
    raise CnnlensError(f"preprocessing must be a Preprocessing, a dict of its fields or None; got {type(p).__name__}.")


def _bundled(
    name: str,
    spec: str | None,
    prep: Preprocessing | None,
    names: list[str] | None,
    num_classes: int | None,
    map_location: str | torch.device,
) -> Classifier:
    if spec is not None:
        raise CnnlensError(
            f"{name!r} is a bundled model; {say('spec is', '--arch is')} only used with state-dict files."
        )
    clf = _load_bundled(name, map_location)
    if num_classes is not None and num_classes != clf.num_classes:
        raise CnnlensError(
            f"The bundled model {name!r} has {clf.num_classes} classes, not {say('num_classes=', '--num-classes ')}"
            f"{num_classes}."
        )
    return _given(clf, name, names, prep)


def _given(clf: Classifier, name: str, names: list[str] | None, prep: Preprocessing | None) -> Classifier:
    """``clf`` with the class names and preprocessing the caller gave over its own (checked against its classes)."""
    if names is not None:
        if len(names) != clf.num_classes:
            raise CnnlensError(f"{name!r} has {clf.num_classes} classes but {len(names)} class names were given.")
        clf.class_names = names
    if prep is not None:
        clf.preprocessing = prep
    return clf


def _not_found_message(raw: str | os.PathLike, path: Path) -> str:
    bundled = ", ".join(bundled_models())
    text = os.fspath(raw)
    looks_like_path = os.sep in text or "/" in text or path.suffix != ""
    if looks_like_path:
        return f"Model file not found: {text!r}. Check the path, or use a bundled model ({bundled})."
    close = difflib.get_close_matches(text, bundled_models(), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"Unknown model {text!r}: it is neither a bundled model nor an existing file.{hint} "
        f"Bundled models: {bundled}. To use your own model pass "
        + say("an nn.Module, a TorchScript file, ", "--model FILE: a TorchScript file ")
        + f"or a state-dict file with {_spec_hint()}."
    )


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.namelist()
    except zipfile.BadZipFile:
        return False
    return any(e.endswith("/constants.pkl") or "/code/" in e for e in entries)


def _read_state_dict(path: Path, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CnnlensError(
            f"{str(path)!r} could not be loaded with weights_only=True: it probably contains a whole pickled "
            "model, which cnnlens does not unpickle (it can run arbitrary code). Save model.state_dict() "
            "or a TorchScript file instead."
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CnnlensError(f"Could not read {str(path)!r} as a PyTorch file ({e}); is it corrupt?") from e
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CnnlensError(
            f"{str(path)!r} does not hold a state dict (a mapping of names to tensors); got {type(obj).__name__}."
        )
    return dict(obj)


def _build_from_spec(spec: str, num_classes: int | None) -> nn.Module:
    module_name, sep, attr = spec.partition(":")
    what = say("spec", "--arch")
    if not sep or not module_name or not attr:
        raise CnnlensError(f"{what} must look like 'package.module:ClassName'; got {spec!r}.")
    try:
        mod = importlib.import_module(module_name)
    except ImportError as e:
        raise CnnlensError(f"{what} {spec!r}: cannot import module {module_name!r} ({e}). Is it on sys.path?") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CnnlensError(f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CnnlensError(f"{what} {spec!r} does not name a class or function.")
    try:
        module = obj() if num_classes is None else obj(num_classes=num_classes)
    except TypeError as e:
        how = "with no arguments" if num_classes is None else f"with num_classes={num_classes}"
        raise CnnlensError(f"{what} {spec!r}: could not build the model {how} ({e}).") from e
    if not isinstance(module, nn.Module):
        raise CnnlensError(f"{what} {spec!r} built a {type(module).__name__}, not a torch.nn.Module.")
    return module


def _load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path, fix: str | None = None) -> None:
    """Load ``state`` into ``module``, or a clear error listing the keys and shapes that do not match; ``fix``:
    what to check then (default: that the spec names the class, and num_classes)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong_shape),
        ):
            if keys:
                more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
                parts.append(f"{label}: {', '.join(keys[:8])}{more}")
        raise CnnlensError(
            f"The state dict in {str(path)!r} does not match {type(module).__name__}: "
            + "; ".join(parts)
            + ". "
            + (
                fix
                or f"Check that {say('spec', '--arch')} names the class the weights were saved from (and "
                f"{say('num_classes', '--num-classes')})."
            )
        )
    module.load_state_dict(state, strict=True)
