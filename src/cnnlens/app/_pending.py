"""Explanations computed on demand, shown at once and stored behind: one writer thread stores them in order, with the
store's guarantees (`Store.write_added`: under its lock, each file atomically, the rows last), while the pages read
them from memory (`Store.with_unstored`). A result leaves memory once the store holds it (the pages' reader is read
again first), so a page sees it either here or in the store, never both, never neither. `flush` waits for the writes
(the app's shutdown calls it); a crash loses at most the results not yet stored, which a later request computes
again. A failing write is logged and said on the computation's line, and the result is dropped (asked again, it is
computed again)."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from ..core.errors import CnnlensError

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
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            job = item.job
            try:
                self._store().write_added(item.label, item.method, item.options, item.computed)
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
