"""Explanations computed on demand, shown at once and stored behind: one writer thread stores them in order, with
the store's guarantees (`write_more`: under its lock, each file atomically, the rows last), while the pages read
them from memory. A result leaves memory once the store holds it (the pages' reader is read again first), so a
page sees it either here or in the store, never both, never neither. `flush` waits for the writes (the app's
shutdown calls it); a crash loses at most the results not yet stored, which a later request computes again. A
failing write is logged and said on the computation's line, and the result is dropped (asked again, it is
computed again)."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import CnnlensError
from ..store import Store
from ..store._reader import _SHARED

log = logging.getLogger("cnnlens.app")


@dataclass
class Result:
    """One `compute_more` result waiting to be stored: a new method label's (or a known one's) explanations."""

    label: str
    method: str
    options: dict[str, Any]
    computed: list[dict[str, Any]]
    job: Any = None
    """The computation that made it (told how the write went), or None."""


class Pending:
    """The results not yet stored, and the thread that stores them (started on the first `add`).

    ``store()``: the store as on disk now, to write into; ``refresh()``: called after each write, before the
    result leaves memory, reads the store again (the app gives its `AppState._disk` for both)."""

    def __init__(self, store: Any, refresh: Any) -> None:
        self._store = store
        self._refresh = refresh
        self._lock = threading.Lock()
        self._results: list[Result] = []
        self._queue: queue.Queue[Any] = queue.Queue()  # results, and flush markers (events)
        self._thread: threading.Thread | None = None
        self.generation = 0
        """Changes whenever a result comes or goes (part of the pages' cache keys)."""
        self.failures: list[str] = []
        """Why writes failed, in order."""

    def add(self, result: Result) -> None:
        """Show ``result`` now; store it behind."""
        if result.job is not None:
            result.job.stored = "storing"  # before the writer can say how it went
        with self._lock:
            self._results.append(result)
            self.generation += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._write_all, name="cnnlens-app-writer", daemon=True)
                self._thread.start()
            self._queue.put(result)

    def snapshot(self) -> tuple[list[Result], int]:
        """(the results not yet stored, `generation`), as one moment saw them."""
        with self._lock:
            return list(self._results), self.generation

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every result added so far is stored (or failed); False if ``timeout`` seconds passed first."""
        done = threading.Event()
        with self._lock:
            if not self._results:
                return True
            self._queue.put(done)  # set when the writer reaches it
        return done.wait(timeout)

    def _write_all(self) -> None:
        from ..store import _added

        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            job = item.job
            try:
                _added.write_more(self._store(), item.label, item.method, item.options, item.computed)
            except Exception as err:  # noqa: BLE001 - reported on the computation's line and in the log
                reason = " ".join(str(err).split()) if isinstance(err, CnnlensError) else f"{type(err).__name__}: {err}"
                log.error("storing %s failed: %s", item.label, reason, exc_info=not isinstance(err, CnnlensError))
                self.failures.append(reason)
                if job is not None:
                    job.stored = f"not stored: {reason}; asked again, it is computed again"
            else:
                if job is not None:
                    job.stored = "stored"
            try:
                self._refresh()
            except Exception:  # noqa: BLE001 - the next page reads the store again itself
                log.exception("reading the store again after a write failed")
            with self._lock:
                self._results.remove(item)
                self.generation += 1


class _Mixed:
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


class Shown(Store):
    """A store reader with results not yet stored shown as if they were (see `with_pending`)."""

    _maps: dict[tuple[str, str], dict[int, np.ndarray]]
    _meta: dict[tuple[str, str], dict[str, Any]]

    def _array(self, method: str, explains: str) -> Any:
        rows = self._maps.get((method, explains))
        if rows is None:
            return super()._array(method, explains)
        try:
            array = super()._array(method, explains)
        except (KeyError, FileNotFoundError):
            array = None
        return _Mixed(array, rows, self._meta[(method, explains)])

    def resolution(self, method: str, explains: str = "predicted") -> dict[str, Any]:
        keys = sorted((k for k in self._meta if k[0] == method), key=lambda k: k[1] != explains)
        return dict(self._meta[keys[0]]) if keys else super().resolution(method, explains)


def with_pending(store: Store, results: list[Result]) -> Store:
    """``store`` (as on disk) with ``results`` shown as stored: their rows in ``explanations``, their labels in
    ``added``, their maps read from memory. Results the store holds already are left out (their write has just
    ended)."""
    import pyarrow as pa

    rows, maps, meta, specs = [], {}, {}, {}
    held = store._explained
    for result in results:
        for c in result.computed:
            for j, (position, row) in enumerate(zip(c["positions"], c["rows"], strict=True)):
                if (position, result.label, c["kind"]) in held:
                    continue
                rows.append(row)
                maps.setdefault((result.label, c["kind"]), {})[position] = c["maps"][j]
                meta[(result.label, c["kind"])] = c["meta"]
                specs[result.label] = {"method": result.method, "options": result.options}
    if not rows:
        return store
    shown = object.__new__(Shown)
    shown.__dict__.update({k: v for k, v in store.__dict__.items() if not k.startswith("_") or k in _SHARED})
    added = {**(store.manifest.get("added") or {})}
    added.update({k: v for k, v in specs.items() if k not in store.manifest["methods"] and k not in added})
    shown.manifest = {**store.manifest, "added": added}
    table = pa.Table.from_pylist(rows, schema=store.explanations.schema)
    shown.explanations = pa.concat_tables([store.explanations, table])
    shown._maps, shown._meta = maps, meta
    return shown
