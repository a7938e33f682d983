"""Progress bars on stderr, and one switch for them: ``with progress(False):`` silences every bar cnnlens opens
inside the block (method passes, metric samples, report steps), whoever opens it."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from tqdm.auto import tqdm

P = ParamSpec("P")
R = TypeVar("R")
_SHOWN: ContextVar[bool] = ContextVar("cnnlens_progress", default=True)


@contextmanager
def progress(shown: bool = True) -> Iterator[None]:
    """Inside the block, bars are shown only if ``shown`` (a ``False`` further out wins)."""
    token = _SHOWN.set(_SHOWN.get() and bool(shown))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> tqdm:
    """A tqdm bar on stderr, disabled when progress is switched off here or ``disable=True`` (``delay=2.0``: shown
    only for long work)."""
    from tqdm.auto import tqdm  # imported on first use: `cnnlens --help` starts without it

    disable = bool(options.pop("disable", False)) or not _SHOWN.get()
    if options.get("total") is not None and "bar_format" not in options:
        options["bar_format"] = _WHOLE_COUNTS  # model passes are counted in fractions; shown as whole numbers
    return tqdm(iterable, file=sys.stderr, disable=disable, **options)


_WHOLE_COUNTS = "{l_bar}{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def honours_progress(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: the function's own ``progress=`` argument switches every bar opened while it runs."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with progress(bool(bound.arguments.get("progress", True))):
            return fn(*args, **kwargs)

    return wrapper


_WATCHER: ContextVar[Callable[[int], None] | None] = ContextVar("cnnlens_watcher", default=None)


@contextmanager
def watching(callback: Callable[[int], None]) -> Iterator[None]:
    """Inside the block (in this thread), every model call of the attribution engine reports the inputs it
    evaluated to ``callback(n)`` once it is done; an exception ``callback`` raises stops the work there (the
    model is restored as on any error). The local app counts passes and cancels a computation this way."""
    token = _WATCHER.set(callback)
    try:
        yield
    finally:
        _WATCHER.reset(token)


def checkpoint(passes: int) -> None:
    """Report ``passes`` model inputs just evaluated to the watcher of this thread, if any (see `watching`)."""
    callback = _WATCHER.get()
    if callback is not None:
        callback(passes)
