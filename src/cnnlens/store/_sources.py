"""Where a store's model and data came from, written so that the store reopens them from any folder: model and data
paths made absolute, the folder the architecture's module was imported from, and the data's class map."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError


def absolute(text: str) -> str:
    """``text`` as an absolute path when it names an existing file or folder (relative to the working folder),
    else unchanged (a bundled model's name, a ``digits:test`` spec)."""
    return str(Path(text).resolve()) if Path(text).exists() else text


def module_root(arch: str | None) -> str | None:
    """The folder to put on ``sys.path`` to import the module of ``arch`` (``package.module:ClassName``), as it
    was imported now; ``None`` without an arch, for a module that is not a file, or one inside site-packages
    (installed: importable anywhere)."""
    if not arch or ":" not in arch:
        return None
    name = arch.partition(":")[0]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin) or "site-packages" in spec.origin:
        return None
    up = len(name.split(".")) - (0 if Path(spec.origin).name == "__init__.py" else 1)
    return str(Path(spec.origin).resolve().parents[up])


def record(model: Mapping[str, Any], dataset: Mapping[str, Any], sources: Any) -> tuple[dict, dict]:
    """The manifest's ``model`` and ``dataset`` entries with what reopens them from any folder (module doc)."""
    class_map = getattr(sources, "class_map", None)
    return (
        {
            **model,
            "source": model["source"] and absolute(model["source"]),
            "arch": sources.arch,
            "arch_root": module_root(sources.arch),
        },
        {
            **dataset,
            "spec": dataset["spec"] and absolute(dataset["spec"]),
            "class_map": None if class_map is None else dict(class_map),
        },
    )


@contextmanager
def importable(spec: Mapping[str, Any]) -> Iterator[None]:
    """Inside the block, the architecture module of the manifest's model ``spec`` can be imported: its recorded
    folder is put first on ``sys.path`` when the module is not importable as it is (taken off again after).
    Raises `CnnlensError` saying what to add when the folder is gone."""
    arch, root = spec.get("arch"), spec.get("arch_root")
    name = arch.partition(":")[0] if arch else None
    if not name or not root or _findable(name):
        yield
        return
    if not Path(root, *name.split(".")).with_suffix(".py").is_file() and not Path(root, *name.split(".")).is_dir():
        raise CnnlensError(
            f"the store's model is built by {arch}, imported from {root} when the store was made; that module is no "
            f"longer there: put its folder on PYTHONPATH (or install it), or give the model (--model/--arch)"
        )
    sys.path.insert(0, root)
    try:
        yield
    finally:
        if root in sys.path:
            sys.path.remove(root)


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
