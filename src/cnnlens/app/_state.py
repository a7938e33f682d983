"""What the app holds while it runs: the store (read again when a run or an addition changed it), its model and
data set (opened once, on first need), the pictures already drawn, the one computation at a time, and the
on-demand results shown from memory until its writer has stored them (`_pending.py`)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CnnlensError
from ._jobs import Jobs
from ._pending import Pending

DEFAULT_MAX_PASSES = 100_000
"""The app's size limit: most model inputs one on-demand computation may evaluate (``--max-passes``)."""


class Cache:
    """A small thread-safe LRU of drawn pictures (PNG bytes) and photos."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class AppState:
    """The store behind the app and everything opened from it."""

    def __init__(
        self, store: Any, *, model: Any = None, data: Any = None, max_passes: int = DEFAULT_MAX_PASSES,
        jobs: Jobs | None = None, batch_size: int | None = None,
    ) -> None:  # fmt: skip
        from ..store import Store, open_store

        self._store = store if isinstance(store, Store) else open_store(store)
        self.root = Path(self._store.root)
        self.given = {"model": model, "data": data}
        self.batch_size = batch_size
        self.jobs = jobs if jobs is not None else Jobs(max_passes)
        self.pictures = Cache(2048)
        self.photos = Cache(1024)
        self.summaries = Cache(4)
        self._stamp = self._changes()
        self._lock = threading.Lock()
        self.pending = Pending(self._disk, self._disk)
        """On-demand results shown from memory until the store holds them."""
        self._shown: tuple[Any, int, Any] | None = None  # (store on disk, pending generation, what pages read)
        self._open_lock = threading.Lock()
        self.data_problem: str | None = None
        """Why the data set cannot be opened (pages then show maps without photos), once tried."""

    # ---- the store, current ---------------------------------------------------------------------------------
    def _changes(self) -> tuple[int, ...]:
        """Modification times of what a run or an addition changes (files are renamed into these folders)."""
        out = []
        for p in (self.root / "manifest.json", self.root / "images", self.root / "explanations"):
            try:
                out.append(os.stat(p).st_mtime_ns)
            except OSError:
                out.append(0)
        return tuple(out)

    def _disk(self) -> Any:
        """The store as it is on disk now (a new `Store` object after a change; the old one stays as it was for
        pages being drawn from it)."""
        stamp = self._changes()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:  # a new reader (only what changed is read), the same model and data
                    self._store, self._stamp = self._store.copy().refresh(), stamp
        return self._store

    @property
    def store(self) -> Any:
        """The store as the pages show it: as on disk now, with the on-demand results not yet stored."""
        results, generation = self.pending.snapshot()  # first: a result leaves it only once the disk has it
        disk = self._disk()
        shown = self._shown
        if shown is None or shown[0] is not disk or shown[1] != generation:
            shown = (disk, generation, disk.with_unstored(results))
            self._shown = shown
        return shown[2]

    @property
    def version(self) -> tuple[int, ...]:
        """Changes when the store shown does (part of every cached picture's key)."""
        self.store  # noqa: B018 - reads the store again if it changed
        return (*self._stamp, self.pending.generation)

    # ---- model, data, photos -------------------------------------------------------------------------------------
    def model(self) -> Any:
        with self._open_lock:
            return self.store.model(self.given["model"]) if not self.store.has_opened("model") else self.store.model()

    def dataset(self) -> Any | None:
        """The store's data set, or None when it cannot be opened (``data_problem`` says why)."""
        with self._open_lock:
            if self.store.has_opened("data"):
                return self.store.dataset()
            if self.data_problem is not None:
                return None
            try:
                return self.store.dataset(self.given["data"])
            except CnnlensError as err:
                self.data_problem = " ".join(str(err).split())
                return None

    def preprocessing(self) -> Any:
        spec = self.store.manifest["model"].get("preprocessing")
        if spec is None:
            return None
        from ..models import Preprocessing

        return Preprocessing(**spec)

    def photo(self, image_id: str) -> np.ndarray | None:
        """The image as the model saw it, ``(H, W, 3)`` in [0, 1], or None without its data set."""
        from ._pictures import pixels

        store = self.store
        position = store.row(image_id)["position"]  # unknown ids raise
        key = (image_id, position)
        cached = self.photos.get(key)
        if cached is not None:
            return cached
        dataset = self.dataset()
        if dataset is None:
            return None
        return self.photos.put(key, pixels(dataset[position][0], self.preprocessing()))
