"""Which class a stored explanation explains, and the explanations added to a store after its run.

A row's ``explains`` is its kind: ``"predicted"`` (the model's answer), ``"label"`` (the true class, kept where it
differs from the answer) or ``"class-K"`` (class index K, neither of them; added on demand). Maps of one method and
kind form one Zarr array ``maps/LABEL/KIND``.

Explanations added after the run (`Store.explain`) are written as ``explanations/added-NNNNNN.parquet``, one file
per addition, numbered in order; a later addition of the same (image, method, kind) replaces an earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CnnlensError

ADDED = re.compile(r"^added-(\d{6})\.parquet$")
CLASS_KIND = re.compile(r"^class-(\d+)$")


def added_name(number: int) -> str:
    return f"added-{number:06d}.parquet"


def added_parts(folder: Path) -> list[tuple[int, Path]]:
    """(number, path) of the additions in ``folder``, in order."""
    if not folder.is_dir():
        return []
    found = ((ADDED.match(p.name), p) for p in folder.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def added_rows(run: Any, parts: list[Any]) -> Any:
    """The run's explanations table followed by the rows of the added ``parts`` (in the order written), each
    (position, method, kind) once: the last written wins (an addition never writes a row the store holds, so this
    only matters for additions of the same rows from two stores that were merged by hand)."""
    import numpy as np
    import pyarrow as pa

    if not parts:
        return run
    added = pa.concat_tables(parts)
    keys = zip(*(added.column(c).to_pylist() for c in ("position", "method", "explains")), strict=True)
    last = {key: i for i, key in enumerate(keys)}
    keep = np.zeros(added.num_rows, dtype=bool)
    keep[list(last.values())] = True
    return pa.concat_tables([run, added.filter(keep)])


def target_class(row: dict[str, Any], explains: str | int, classes: int) -> int:
    """The class index ``explains`` names for the image of ``row`` (an ``images`` row)."""
    if isinstance(explains, bool) or not isinstance(explains, (str, int)):
        raise CnnlensError(f"explains must be 'predicted', 'label' or a class index; got {explains!r}")
    if isinstance(explains, str) and CLASS_KIND.match(explains):
        explains = int(explains.split("-")[1])
    if explains == "predicted":
        if row["predicted"] is None:
            raise CnnlensError(f"{row['id']!r} has no prediction: it failed in the run ({row['error']})")
        return int(row["predicted"])
    if explains == "label":
        if row["label"] is None:
            raise CnnlensError(f"{row['id']!r} has no label (an unlabelled image); explain a class index instead")
        return int(row["label"])
    if isinstance(explains, str):
        raise CnnlensError(f"explains must be 'predicted', 'label' or a class index; got {explains!r}")
    if not 0 <= explains < classes:
        raise CnnlensError(f"class {explains} out of range: the store's model has classes 0..{classes - 1}")
    return int(explains)


def kind_of(row: dict[str, Any], target: int) -> str:
    """The kind an explanation of class ``target`` is stored as."""
    if row["ok"] and target == row["predicted"]:
        return "predicted"
    if target == row["label"]:
        return "label"
    return f"class-{target}"


def kinds(row: dict[str, Any], explains: str | int, classes: int) -> list[str]:
    """The kinds that may hold the explanation ``explains`` of the image of ``row``, in the order to look."""
    if explains == "predicted":
        return ["predicted"]
    if explains == "label":
        agree = row["ok"] and row["label"] is not None and row["label"] == row["predicted"]
        return ["label", "predicted"] if agree else ["label"]
    target = target_class(row, explains, classes)
    first = kind_of(row, target)
    also = ["label"] if first == "predicted" and target == row["label"] else []
    return [first, *also]


@dataclass
class Added:
    """What one `Store.explain` call did."""

    label: str
    """The method label the explanations are stored under."""
    explained: list[str] = field(default_factory=list)
    """Images explained now."""
    already: list[str] = field(default_factory=list)
    """Images whose explanation was in the store already (kept, not computed again)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Images that could not be explained, with the reason."""
    passes: int = 0
    seconds: float = 0.0
