"""What a store reader reads: its Parquet parts (each file read once), and maps of explanations computed but not yet
stored, shown from memory (`Store.with_unstored`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CnnlensError


class Parts:
    """The Parquet parts of a store, each file read once: on `read` again only new or changed files are read (a
    finished part is never rewritten; a run started afresh writes new files)."""

    def __init__(self) -> None:
        self._tables: dict[Path, tuple[tuple[int, int], Any]] = {}

    def read(self, folder: Path, pattern: Any, schema: Any) -> list[Any]:
        """The tables of the files in ``folder`` whose names match ``pattern``, in name order."""
        import pyarrow.parquet as pq

        names = sorted(p.name for p in folder.iterdir() if pattern.match(p.name)) if folder.is_dir() else []
        tables = []
        for name in names:
            path = folder / name
            try:
                info = path.stat()
            except FileNotFoundError:  # removed since it was listed (a run started afresh)
                continue
            stamp = (info.st_mtime_ns, info.st_size)
            known = self._tables.get(path)
            if known is None or known[0] != stamp or known[1].schema != schema:
                known = (stamp, pq.read_table(path, schema=schema))
                self._tables[path] = known
            tables.append(known[1])
        return tables

    def remember(self, path: Path, table: Any) -> None:
        """``table`` is what the file ``path`` (just written) holds: not read back."""
        info = path.stat()
        self._tables[path] = ((info.st_mtime_ns, info.st_size), table)


def _concat(tables: list[Any], schema: Any) -> Any:
    import pyarrow as pa

    return pa.concat_tables(tables) if tables else schema.empty_table()


def concat(tables: list[Any], schema: Any) -> Any:
    import pyarrow as pa

    return pa.concat_tables(tables) if tables else schema.empty_table()


class MixedMaps:
    """A Zarr array of maps with some rows given from memory (``rows``: position -> float16 map)."""

    def __init__(self, array: Any, rows: dict[int, np.ndarray], attrs: dict[str, Any]) -> None:
        self._array, self._rows = array, rows
        self.attrs = attrs if array is None else array.attrs

    def __getitem__(self, position: int) -> np.ndarray:
        if position in self._rows:
            return self._rows[position]
        if self._array is None:
            raise CnnlensError("no stored map here")
        return self._array[position]


Unstored = tuple[list[dict[str, Any]], dict[tuple[str, str], tuple[dict[int, np.ndarray], dict[str, Any]]], dict]


def unstored_view(store: Any, results: Iterable[Any]) -> Any:
    """See `Store.with_unstored`."""
    import pyarrow as pa

    rows, maps, specs = _unstored_rows(results, store._explained)
    if not rows:
        return store
    shown = store.copy()
    added = {**(store.manifest.get("added") or {})}
    added.update({k: v for k, v in specs.items() if k not in store.manifest["methods"] and k not in added})
    shown.manifest = {**store.manifest, "added": added}
    table = pa.Table.from_pylist(rows, schema=store.explanations.schema)
    shown.explanations = pa.concat_tables([store.explanations, table])
    shown._unstored = maps
    return shown


def _unstored_rows(results: Iterable[Any], held: Any) -> Unstored:
    """(rows, (label, kind) -> (position -> map, the maps' attributes), label -> ``{"method", "options"}``) of
    ``results`` (see `Store.with_unstored`), rows whose (position, label, kind) is ``held`` left out."""
    rows, meta, specs = [], {}, {}
    maps: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for result in results:
        for c in result.computed:
            for j, (position, row) in enumerate(zip(c["positions"], c["rows"], strict=True)):
                if (position, result.label, c["kind"]) in held:
                    continue
                rows.append(row)
                maps.setdefault((result.label, c["kind"]), {})[position] = c["maps"][j]
                meta[(result.label, c["kind"])] = c["meta"]
                specs[result.label] = {"method": result.method, "options": result.options}
    return rows, {key: (maps[key], meta[key]) for key in maps}, specs
