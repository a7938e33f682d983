"""`Store.explain`: one more method's explanations for some images of a store, computed with the store's model and
data and written with the guarantees of a run.

The addition holds the store's lock (a run writing the store refuses it, and the other way round), registers a new
method label in the manifest's ``added`` entry, writes the maps into ``maps/LABEL/KIND`` (Zarr writes each shard
file whole under a temporary name), then the rows as ``explanations/added-NNNNNN.parquet``, which commits them: a
kill at any moment leaves the store as it was or with the addition, never half of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import CnnlensError
from ..core.files import remove_temporary, write_bytes, write_json
from ..core.progress import progress as progress_switch
from ._compute import _compact, _inputs, _number, _reason, _Shard, _stored
from ._kinds import Added, added_name, added_parts, kind_of, target_class
from ._layout import EXPLANATIONS, MAPS, Lock, explanations_schema, map_array, parquet_bytes, read_manifest
from ._settings import RunPlan, dataset_ids, plain

LABEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,79}$")


def full_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every option of ``method`` (defaults filled in, checked by the registry), as plain JSON values."""
    from ..attribution import MethodChoice

    return plain(MethodChoice(method, method, options).full_options(), f"the options of method {method!r}")


def choose_label(store: Any, method: str, options: dict[str, Any], label: str | None) -> str:
    """The label of ``method`` with ``options`` in ``store``: the one it has already, else ``label``, else the
    method's name, else ``NAME-2``, ``NAME-3``..."""
    specs = {**(store.manifest.get("added") or {}), **store.manifest["methods"]}
    same = [k for k, v in specs.items() if v["method"] == method and v["options"] == options]
    if label is None:
        if same:
            return same[0]
        label = next(c for c in (method, *(f"{method}-{k}" for k in range(2, 10_000))) if c not in specs)
    if not isinstance(label, str) or not LABEL.match(label):
        raise CnnlensError(
            f"a method label must be 1 to 80 letters, digits and _ . + - (starting with a letter, digit or _); got "
            f"{label!r}"
        )
    if label in specs and label not in same:
        raise CnnlensError(
            f"the store holds {label!r} already as {specs[label]['method']} with other options "
            f"({specs[label]['options']}); choose another label, or leave it out"
        )
    return label


def explain_more(
    store: Any, ids: Any, method: str, explains: str | int, *, label: str | None, score: bool, model: Any,
    data: Any, batch_size: int | None, progress: bool, options: dict[str, Any], reread: bool = True,
) -> Added:  # fmt: skip
    """See `Store.explain` (``reread=False``: the store object is not read again after the addition, for a caller
    that reads the store with another object)."""
    start = time.perf_counter()
    added, options, computed = compute_more(
        store, ids, method, explains, label=label, score=score, model=model, data=data, batch_size=batch_size,
        progress=progress, options=options,
    )  # fmt: skip
    if computed:
        write_more(store, added.label, method, options, computed)
        if reread:
            store.refresh()
    added.seconds = time.perf_counter() - start
    return added


def compute_more(
    store: Any, ids: Any, method: str, explains: str | int, *, label: str | None, score: bool, model: Any,
    data: Any, batch_size: int | None, progress: bool, options: dict[str, Any],
) -> tuple[Added, dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """The computing half of `explain_more`, nothing written: (the `Added`, every option of the method, what
    `write_more` stores: per (kind, shard) the positions, rows, float16 maps and their array's metadata)."""
    start = time.perf_counter()
    ids = [ids] if isinstance(ids, str) else list(ids)
    if not ids:
        raise CnnlensError("no images to explain: give one or more image ids of the store")
    options = full_options(method, options)
    label = choose_label(store, method, options, label)
    added = Added(label)
    todo: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)  # (kind, shard) -> [(position, target)]
    shard_size = store.manifest["shard_size"]
    for image_id in dict.fromkeys(ids):
        row = store.row(image_id)  # unknown ids raise here
        if not row["ok"]:
            added.failed[image_id] = f"it failed in the run: {row['error']}"
            continue
        target = target_class(row, explains, len(store.classes))
        kind = kind_of(row, target)
        if label in store.labels and store.has(image_id, label, kind):
            added.already.append(image_id)
            continue
        todo[(kind, row["position"] // shard_size)].append((row["position"], target))
    if not todo:
        return added, options, []
    with progress_switch(progress):
        classifier, dataset = store.model(model), store.dataset(data)
        job = RunPlan(
            classifier=classifier, dataset=dataset, methods={label: (method, options)},
            metrics=store.manifest["metrics"] if score else {}, explain="predicted", top_k=store.manifest["top_k"],
            downsample=store.manifest["maps"]["downsample"], shard_size=shard_size, seed=store.manifest["seed"],
            batch_size=batch_size, ids=dataset_ids(dataset),
        )  # fmt: skip
        unscored = bool(store.metrics) and not score
        computed = [_compute(job, kind, shard, pairs, added, unscored) for (kind, shard), pairs in todo.items()]
    added.seconds = time.perf_counter() - start
    return added, options, [c for c in computed if c is not None]


def _compute(
    job: RunPlan, kind: str, shard: int, pairs: list[tuple[int, int]], added: Added, unscored: bool
) -> dict[str, Any] | None:
    """Explain (and score) the images ``pairs`` of one shard for one kind; their rows and float16 maps."""
    work = _Shard(job, shard)
    label = next(iter(job.methods))
    positions, items = [], []
    for position, _ in pairs:
        try:
            items.append(job.dataset[position][0])
            positions.append(position)
        except Exception as err:  # noqa: BLE001 - any reason the image cannot be read now is reported
            added.failed[job.ids[position]] = f"cannot be read: {_reason(err)}"
    if not positions:
        return None
    targets = torch.tensor([t for p, t in pairs if p in positions], dtype=torch.long)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(work.seed)
        x = _inputs(job.classifier, items)
        e, bad, said = work.explain(label, x, targets)
        for i, reason in bad.items():
            added.failed[job.ids[positions[i]]] = reason
        if e is None:
            return None
        keep = [i for i in range(len(positions)) if i not in bad]
        values, notes = work.score(label, e, x[keep], targets[keep])
    if unscored:
        notes = [*notes, "not scored: explained on demand without the store's metrics"]
    stored, meta = _stored(e, job.downsample, (int(x.shape[-2]), int(x.shape[-1])))
    compact, scales, clipped = _compact(stored)
    if clipped:
        said = [*said, "some map values were not finite; they are stored as NaN"]
    sums = e.attributions.detach().flatten(1).double().sum(1).cpu().numpy()
    delta = None if e.delta is None else e.delta.detach().double().cpu().numpy()
    rows = []
    for j, i in enumerate(keep):
        rows.append(
            {
                "position": positions[i], "id": job.ids[positions[i]], "method": label, "explains": kind,
                "target": int(e.target[j]), "seconds": e.seconds / len(keep), "passes": e.passes / len(keep),
                "delta": None if delta is None else float(delta[j]), "attribution_sum": float(sums[j]),
                "map_scale": float(scales[j]), "warnings": list(said), "notes": list(notes),
                **{m: _number(v[j]) for m, v in values.items()},
            }
        )  # fmt: skip
        added.explained.append(job.ids[positions[i]])
    added.passes += e.passes + work.passes
    return {"kind": kind, "positions": [positions[i] for i in keep], "maps": compact, "meta": meta, "rows": rows}


def write_more(store: Any, label: str, method: str, options: dict[str, Any], computed: list[dict[str, Any]]) -> None:
    """Under the store's lock: the maps, the label in the manifest, then the rows (the commit; a label without
    rows is not listed). ``computed``: from `compute_more`."""
    import pyarrow as pa

    lock = Lock(store.root)
    try:
        lock.acquire()
    except CnnlensError:
        raise CnnlensError(
            f"a run is writing to the store {store.root}; add explanations once it has finished (nothing was stored)"
        ) from None
    try:
        for folder in (store.root, store.root / EXPLANATIONS):
            remove_temporary(folder)  # what a killed writer left (we hold the lock: nobody else writes them)
        manifest = read_manifest(store.root)
        if (
            manifest is None
            or manifest.get("dataset", {}).get("fingerprint") != store.manifest["dataset"]["fingerprint"]
        ):
            raise CnnlensError(f"the store {store.root} was replaced while this was computed; open it again")
        _write_maps(store, manifest, label, computed)
        if label not in manifest["methods"] and label not in manifest.get("added", {}):
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest.setdefault("added", {})[label] = {"method": method, "options": options, "added": stamp}
            write_json(store.root / "manifest.json", manifest)
        rows = sorted((r for c in computed for r in c["rows"]), key=lambda r: (r["position"], r["explains"]))
        number = max((n for n, _ in added_parts(store.root / EXPLANATIONS)), default=-1) + 1
        table = pa.Table.from_pylist(rows, schema=explanations_schema(list(manifest["metrics"])))
        path = write_bytes(store.root / EXPLANATIONS / added_name(number), parquet_bytes(table))
        store._parts.remember(path, table)  # the store's readers need not read it back
    finally:
        lock.release()


class _Arrays:
    """Zarr arrays of maps opened once: reused while their metadata file is the one they were opened from."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, str], tuple[tuple[int, int], Any]] = {}

    def get(self, root: Path, manifest: dict[str, Any], key: tuple[str, str], maps: Any, meta: dict[str, Any]) -> Any:
        path = root / MAPS / key[0] / key[1] / "zarr.json"
        try:
            info = path.stat()
            stamp = (info.st_mtime_ns, info.st_ino)
        except FileNotFoundError:
            stamp = None
        known = self._open.get((str(root.resolve()), *key))
        if stamp is not None and known is not None and known[0] == stamp:
            return known[1]
        array = map_array(root, manifest, key, maps, meta)
        info = path.stat()
        self._open[(str(root.resolve()), *key)] = ((info.st_mtime_ns, info.st_ino), array)
        return array


_arrays = _Arrays()


def _write_maps(store: Any, manifest: dict[str, Any], label: str, computed: list[dict[str, Any]]) -> None:
    """Each image's map into its row of ``maps/LABEL/KIND`` (Zarr rewrites the shard files it touches whole)."""
    shard = manifest["shard_size"]
    for c in computed:
        array = _arrays.get(store.root, manifest, (label, c["kind"]), c["maps"], c["meta"])
        for k in {p // shard for p in c["positions"]}:  # Zarr's temporary names beside the shard files written
            folder = store.root / MAPS / label / c["kind"] / "c" / str(k) / "0" / "0"
            with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(".partial"):
                        Path(entry.path).unlink(missing_ok=True)
        positions, maps = np.asarray(c["positions"]), c["maps"]
        order = np.argsort(positions)
        positions, maps = positions[order], maps[order]
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for run, block in zip(np.split(positions, breaks), np.split(maps, breaks), strict=True):
            array[int(run[0]) : int(run[-1]) + 1] = block  # consecutive images in one write
