"""``torchvision:NAME`` and ``timm:NAME``: models built by their library, with the preprocessing and class names of
their pretrained weights' metadata; the weights come from a local file or a cache folder and are never downloaded.

Where named weights are looked for (cnnlens reads these folders, it never fills them):

- torchvision: ``torch.hub.get_dir()/checkpoints/<file name of the weights' URL>``, the folder and name torchvision
  itself downloads to (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``).
- timm: the Hugging Face hub cache, where ``timm.create_model(..., pretrained=True)`` saves them
  (``model.safetensors`` or ``pytorch_model.bin`` of the weights' hub repository, read without network); else
  ``torch.hub.get_dir()/checkpoints/<file name of the weights' URL>`` for weights with a URL; else
  ``torch.hub.get_dir()/checkpoints/<model>.<tag>.safetensors`` (the place the missing-file error names).
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from cnnlens.core.errors import CnnlensError, CnnlensWarning, say
from cnnlens.models._classifier import Classifier, Preprocessing

PREFIXES = ("torchvision:", "timm:")
StateReader = Callable[[Path], dict[str, torch.Tensor]]
Fitter = Callable[[nn.Module, dict[str, torch.Tensor], Path, str], None]
"""``fit(module, state, file, fix)``: load ``state`` into ``module`` strictly, or an error ending with ``fix``."""
_PATCH = threading.Lock()  # one torchvision build at a time serves its weights from the file read here


def is_zoo_name(name: object) -> bool:
    """Whether ``name`` is a ``torchvision:NAME`` or ``timm:NAME`` model name."""
    return isinstance(name, str) and name.startswith(PREFIXES)


def checkpoints_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints``: where torchvision keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _library(lib: str) -> Any:
    try:
        return importlib.import_module("torchvision.models" if lib == "torchvision" else "timm")
    except ImportError as e:
        raise CnnlensError(
            f"'{lib}:' models need the {lib} package, which cannot be imported here ({e}); "
            f'install it with: pip install "cnnlens[{lib}]"'
        ) from e


def _unknown(lib: str, name: str, known: list[str]) -> CnnlensError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(f'{lib}:{c}' for c in close)}?" if close else ""
    listing = (
        "torchvision.models.list_models(module=torchvision.models)" if lib == "torchvision" else "timm.list_models()"
    )
    return CnnlensError(f"{lib} has no image classifier {name!r}.{hint} The names: {listing}.")


def _random_warning(name: str) -> None:
    warnings.warn(
        f"{name} has random weights ({say('weights=None', '--weights none')}): its predictions are noise and "
        "every map explains noise; for trained weights "
        + say("pass weights='DEFAULT' (or a weights name, or a file).", "leave out --weights (or give a file)."),
        CnnlensWarning,
        stacklevel=4,
    )


def _missing(name: str, wanted: Path, source: str, looked: list[Path]) -> CnnlensError:
    where = "" if looked == [wanted] else f" (looked in: {', '.join(str(p) for p in looked)})"
    return CnnlensError(
        f"The weights of {name} are not on this machine{where}; cnnlens never downloads. Download {source} "
        f"and save it as {str(wanted)!r}, or {say('pass weights=PATH', 'give --weights PATH')} naming your copy, "
        + say("or weights=None for random weights.", "or --weights none for random weights.")
    )


def _class_names(names: list[str] | None, module: nn.Module, num_classes: int | None) -> list[str] | None:
    """``names`` when the module has as many outputs as names and no other class count was asked for."""
    if names is None or (num_classes is not None and num_classes != len(names)):
        return None
    heads = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if heads and heads[-1].out_features != len(names):
        return None
    return names


# ---- torchvision ------------------------------------------------------------------------------------------------


def _tv_preprocessing(member: Any, name: str) -> Preprocessing:
    t = member.transforms()
    try:
        crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
        mean, std, interpolation = tuple(t.mean), tuple(t.std), t.interpolation.value
    except (AttributeError, IndexError, TypeError) as e:
        raise CnnlensError(
            f"{name}: the weights' transforms ({type(t).__name__}) are not an image classifier's; "
            "pass preprocessing= to load_model"
        ) from e
    return Preprocessing((crop, crop), resize, mean, std, interpolation)


def _tv_member(enum: Any, weights: Any) -> Any | None:
    """The weights enum member ``weights`` names (``None`` when it names none)."""
    if isinstance(weights, enum):
        return weights
    if isinstance(weights, str) and weights in enum.__members__:
        return enum[weights]
    if isinstance(weights, str) and "." in weights and weights.split(".")[0] == enum.__name__:
        member = weights.split(".", 1)[1]
        if member in enum.__members__:
            return enum[member]
    return None


@contextmanager
def _serving(member: Any, state: dict[str, torch.Tensor]) -> Iterator[list[str]]:
    """While the builder runs, ``member.get_state_dict()`` returns ``state`` instead of downloading (the
    enum class's own attribute, restored after); yields the list of URLs asked for."""
    cls = type(member)
    asked: list[str] = []

    def get_state_dict(self: Any, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        asked.append(self.url)
        return state

    with _PATCH:
        had = "get_state_dict" in cls.__dict__
        old = cls.__dict__.get("get_state_dict")
        setattr(cls, "get_state_dict", get_state_dict)  # noqa: B010 - an enum class, one attribute
        try:
            yield asked
        finally:
            if had:
                setattr(cls, "get_state_dict", old)  # noqa: B010
            else:
                delattr(cls, "get_state_dict")


def _tv_build(builder: Any, member: Any, file: Path, name: str, read: StateReader) -> nn.Module:
    """The model as torchvision builds it with ``member``'s weights, read from ``file``."""
    state = read(file)
    try:
        with _serving(member, state) as asked:
            module = builder(weights=member)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()
        raise CnnlensError(
            f"{str(file)!r} does not hold the weights of {name} with {member} ({lines[0] if lines else e}); "
            "is it the right file?"
        ) from e
    if not asked:
        raise CnnlensError(f"torchvision built {name} without reading its weights; pass a file with weights=PATH")
    return module


def load_torchvision(
    arch: str,
    weights: Any,
    *,
    num_classes: int | None,
    map_location: str | torch.device,
    read: StateReader,
    fit: Fitter,
) -> Classifier:
    """``torchvision:ARCH`` (see `cnnlens.models.load_model`); ``read`` and ``fit`` read and load weights files."""
    tvm = _library("torchvision")
    name = f"torchvision:{arch}"
    known = list(tvm.list_models(module=tvm))
    if arch not in known:
        raise _unknown("torchvision", arch, known)
    builder, enum = tvm.get_model_builder(arch), tvm.get_model_weights(arch)
    info: dict[str, object] = {"library": "torchvision"}
    if weights is None:
        _random_warning(name)
        module, meta = builder(weights=None, **_classes_kw(num_classes)), enum.DEFAULT
        info["weights"] = None
    else:
        member, file = _tv_member(enum, weights), None
        if member is None:  # a file: torchvision's own weights under their own name, or the user's
            file = _own_file(weights, name, list(enum.__members__))
            member = next((m for m in enum if _url_name(m.url) == file.name), None)
        if member is None:
            module, meta = builder(weights=None, **_classes_kw(num_classes)), enum.DEFAULT
            fit(module, read(file), file, _fix(name))  # type: ignore[arg-type]  # file is set when member is None
            info.update(weights="own", weights_file=str(file))
        else:
            meta = member
            _same_classes(f"{name} with {member}", len(member.meta["categories"]), num_classes)
            if file is None:
                file = checkpoints_dir() / _url_name(member.url)
                if not file.is_file():
                    raise _missing(f"{name} ({member})", file, member.url, [file])
            module = _tv_build(builder, member, file, name, read)
            info.update(weights=str(member), weights_file=str(file))
    info["metadata"] = str(meta)
    names = _class_names(list(meta.meta["categories"]), module, num_classes)
    clf = Classifier(module.to(map_location).eval(), _tv_preprocessing(meta, name), names, name)
    clf.info.update(info)
    return clf


def _classes_kw(num_classes: int | None) -> dict[str, int]:
    return {} if num_classes is None else {"num_classes": num_classes}


def _url_name(url: str) -> str:
    """The file name a download of ``url`` gets (torch hub's rule)."""
    return Path(urlparse(url).path).name


def _same_classes(what: str, classes: int, num_classes: int | None) -> None:
    if num_classes is not None and num_classes != classes:
        raise CnnlensError(
            f"{what} has {classes} classes, not {say('num_classes=', '--num-classes ')}{num_classes}; for your own "
            f"weights with another head {say('pass weights=PATH', 'give --weights PATH')}"
        )


def _fix(name: str) -> str:
    return f"Check that the weights are {name}'s, and {say('num_classes=', '--num-classes')} for another head."


def _own_file(weights: Any, name: str, choices: list[str]) -> Path:
    if not isinstance(weights, (str, os.PathLike)):
        raise CnnlensError(f"weights must be a file path, a weights name or None; got {type(weights).__name__}")
    path = Path(weights)
    if not path.is_file():
        raise CnnlensError(
            f"{name}: the weights {os.fspath(weights)!r} are neither a file nor a weights name "
            f"(the names: {', '.join(choices)})"
        )
    return path


# ---- timm -------------------------------------------------------------------------------------------------------


def _timm_preprocessing(cfg: dict[str, Any], name: str) -> Preprocessing:
    """timm's eval transform from its pretrained config: resize the short side to floor(size / crop_pct), then
    center-crop ``input_size``."""
    h, w = (int(v) for v in cfg["input_size"][-2:])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    resize = math.floor(min(h, w) / crop_pct)
    if cfg.get("crop_mode", "center") != "center" or h != w:
        warnings.warn(
            f"{name}: timm's transform ({cfg.get('crop_mode')} crop of {h}x{w}) is approximated by a short-side "
            f"resize to {resize} and a center crop",
            CnnlensWarning,
            stacklevel=4,
        )
    interpolation = cfg.get("interpolation") or "bilinear"
    interpolation = interpolation if interpolation in ("nearest", "bilinear", "bicubic") else "bicubic"
    return Preprocessing((h, w), max(resize, h, w), cfg["mean"], cfg["std"], interpolation)


def _timm_names(timm: Any, cfg: dict[str, Any]) -> list[str] | None:
    subset = timm.data.infer_imagenet_subset(cfg)
    if subset is None:
        return None
    return [str(d) for d in timm.data.ImageNetInfo(subset).label_descriptions()]


def _timm_tag(timm: Any, name: str, weights: str) -> str:
    """``arch.tag`` that ``name`` and the weights name ``weights`` ("DEFAULT" or a tag) mean."""
    arch, tag = timm.models.split_model_name_tag(name)
    if weights != "DEFAULT":
        if tag and tag != weights:
            raise CnnlensError(f"timm:{name} names the tag {tag!r}, the weights {weights!r}; give one of them")
        tag = weights
    full = f"{arch}.{tag}" if tag else arch
    try:
        cfg = timm.models.get_pretrained_cfg(full, allow_unregistered=False)
    except RuntimeError:
        tags = [t.split(".", 1)[-1] for t in timm.list_pretrained(f"{arch}.*")]
        raise CnnlensError(
            f"timm:{arch} has no pretrained weights {tag or weights!r}; its tags: {', '.join(tags) or 'none'}"
        ) from None
    return f"{arch}.{cfg.tag}" if cfg.tag else arch


def _timm_file(cfg: dict[str, Any], full: str) -> Path:
    """The local file of timm's weights ``full`` (``arch.tag``); a clear error naming where to put it if none."""
    looked: list[Path] = []
    hub_id = cfg.get("hf_hub_id")
    if hub_id:  # where timm.create_model(pretrained=True) saves them; read from disk only
        from huggingface_hub import constants, try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        looked.append(Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}")
    url = cfg.get("url") or ""
    by_url = checkpoints_dir() / _url_name(url) if url else None
    own = checkpoints_dir() / f"{full}.safetensors"
    for place in (by_url, own):
        if place is not None:
            if place.is_file():
                return place
            looked.append(place)
    if hub_id:
        raise _missing(f"timm:{full}", own, f"model.safetensors from https://huggingface.co/{hub_id}", looked)
    raise _missing(f"timm:{full}", by_url or own, url or "the weights", looked)


def _is_tag(weights: Any) -> bool:
    """A timm weights name ("DEFAULT" or a tag such as "ra2_in1k"), not a file."""
    return isinstance(weights, str) and not any(c in weights for c in ("/", os.sep, ".")) and not Path(weights).exists()


def load_timm(
    name: str,
    weights: Any,
    *,
    num_classes: int | None,
    map_location: str | torch.device,
    read: StateReader,
    fit: Fitter,
) -> Classifier:
    """``timm:NAME`` (see `cnnlens.models.load_model`); ``read`` and ``fit`` read and load weights files."""
    timm = _library("timm")
    arch, _ = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        raise _unknown("timm", arch, list(timm.list_models()))
    label = f"timm:{name}"
    info: dict[str, object] = {"library": "timm"}
    if weights is None:
        _random_warning(label)
        module = timm.create_model(name, pretrained=False, **_classes_kw(num_classes))
        info["weights"] = None
    elif _is_tag(weights):
        full = _timm_tag(timm, name, weights)
        cfg = timm.models.get_pretrained_cfg(full).to_dict()
        _same_classes(f"timm:{full}", cfg["num_classes"], num_classes)
        file = _timm_file(cfg, full)
        overlay = {"file": str(file), "source": None}  # timm's own local-file loading: no hub, no download
        try:
            module = timm.create_model(full, pretrained=True, pretrained_cfg_overlay=overlay)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CnnlensError(
                f"{str(file)!r} does not hold the weights of timm:{full} ({first}); is it the right file?"
            ) from e
        info.update(weights=full, weights_file=str(file))
    else:
        file = _own_file(weights, label, [t.split(".", 1)[-1] for t in timm.list_pretrained(f"{arch}.*")])
        module = timm.create_model(name, pretrained=False, **_classes_kw(num_classes))
        fit(module, read(file), file, _fix(label))
        info.update(weights="own", weights_file=str(file))
    cfg = dict(module.pretrained_cfg)
    info["metadata"] = f"timm pretrained_cfg of {cfg.get('architecture')}.{cfg.get('tag')}"
    names = _class_names(_timm_names(timm, cfg), module, num_classes)
    clf = Classifier(module.to(map_location).eval(), _timm_preprocessing(cfg, label), names, label)
    clf.info.update(info)
    return clf
