"""The app's one computation at a time: run in its own thread, watched pass by pass (progress), stopped at the next
model call when cancelled or over the size limit, its outcome kept for the pages to show."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import CnnlensError
from ..core.progress import watching

log = logging.getLogger("cnnlens.app")


class Stopped(Exception):  # noqa: N818 - not an error of the computation: it was told to stop
    """Raised inside a computation at a model call when it was cancelled or went over the size limit."""


class Busy(CnnlensError):
    """A computation is running already."""


@dataclass
class Computation:
    """One computation: what it is, how far it got, how it ended."""

    number: int
    title: str
    """What is computed, in words (e.g. "grad_cam for digits/field/4, class 3")."""
    total: int | None = None
    """Model passes expected, when known (predictions: one per image)."""
    passes: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    state: str = "running"
    """``running``, ``done``, ``failed``, ``cancelled`` or ``stopped`` (over the size limit)."""
    message: str = ""
    result: Any = None
    link: str | None = None
    """The page that shows the result."""
    stored: str | None = None
    """For a result stored behind (`Pending`): ``storing``, ``stored`` or ``not stored: WHY``."""
    cancel_asked: bool = False
    ended_event: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set when the computation ends (long polls wait on it)."""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def public(self) -> dict[str, Any]:
        """What the pages are told (JSON)."""
        return {
            "number": self.number, "title": self.title, "state": self.state, "passes": self.passes,
            "total": self.total, "seconds": round(self.seconds, 2), "message": self.message, "link": self.link,
            "stored": self.stored,
            "ended_ago": None if self.ended is None else round(time.monotonic() - self.ended, 1),
        }  # fmt: skip


class Jobs:
    """Runs one computation at a time (`start`), cancellable (`cancel`), with at most ``max_passes`` model inputs."""

    def __init__(self, max_passes: int) -> None:
        if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
            raise CnnlensError(f"max_passes must be a positive int; got {max_passes!r}")
        self.max_passes = max_passes
        self._lock = threading.Lock()
        self._count = 0
        self.current: Computation | None = None
        self._thread: threading.Thread | None = None

    def start(
        self, title: str, work: Callable[[Computation], Any], *, total: int | None = None, limit: bool = True,
        cancelled: str = "cancelled; nothing was stored",
    ) -> Computation:  # fmt: skip
        """Run ``work(job)`` in a thread; raises `Busy` while another computation runs. ``limit``: stop it over
        ``max_passes`` model inputs (a whole data set's predictions are not limited); ``cancelled``: what a
        cancelled job's message says."""
        with self._lock:
            if self.current is not None and self.current.running:
                raise Busy(
                    f"another computation is running ({self.current.title}, {self.current.passes} model passes so "
                    "far); wait for it to finish or cancel it"
                )
            self._count += 1
            job = Computation(self._count, title, total)
            self.current = job
            context = contextvars.copy_context()  # e.g. errors worded for the command line, as where it started
            self._thread = threading.Thread(
                target=context.run, args=(self._run, job, work, limit, cancelled), name=f"cnnlens-app-job-{job.number}",
                daemon=True,
            )  # fmt: skip
            self._thread.start()
        return job

    def _run(self, job: Computation, work: Callable[[Computation], Any], limit: bool, cancelled: str) -> None:
        def tick(n: int) -> None:
            job.passes += n
            if job.cancel_asked:
                raise Stopped("cancelled")
            if limit and job.passes > self.max_passes:
                raise Stopped("limit")

        try:
            with watching(tick):
                job.result = work(job)
            job.state = "done"
        except Stopped as stop:
            job.state = "cancelled" if str(stop) == "cancelled" else "stopped"
            job.message = (
                cancelled
                if job.state == "cancelled"
                else f"stopped: it needed more than {self.max_passes:,} model passes, the size limit (start the app "
                f"with a larger --max-passes, or choose smaller options)"
            )
        except CnnlensError as err:
            job.state, job.message = "failed", " ".join(str(err).split())
        except Exception as err:  # noqa: BLE001 - shown on the page as one line; the traceback goes to the log
            log.exception("computation %r failed", job.title)
            job.state, job.message = "failed", f"unexpected {type(err).__name__}: {' '.join(str(err).split())}"
        finally:
            job.ended = time.monotonic()
            job.ended_event.set()

    def cancel(self) -> Computation | None:
        """Ask the running computation to stop at its next model call (returns it, or None if none runs)."""
        job = self.current
        if job is None or not job.running:
            return None
        job.cancel_asked = True
        return job

    def wait(self, timeout: float | None = None) -> Computation | None:
        """Wait for the current computation to end (tests, the command line's shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.current
