"""One switch for every progress bar: ``progress=False`` on a public entry point silences the bars opened inside."""

from __future__ import annotations

import pytest
import torch

from _nets import inputs, residual_cnn
from cnnlens.core.progress import honours_progress, progress, progress_bar
from cnnlens.quality import Metric, score

pytestmark = pytest.mark.usefixtures("one_thread")


def _quiet() -> bool:
    """Whether a bar opened here would be hidden (the bar is closed again at once)."""
    bar = progress_bar(range(1))
    hidden = bool(bar.disable)
    bar.close()
    return hidden


def test_the_switch_nests_and_restores() -> None:
    assert not _quiet()
    with progress(False):
        assert _quiet()
        with progress(True):  # an inner "show" cannot undo an outer "quiet"
            assert _quiet()
    assert not _quiet()


def test_decorated_functions_read_their_own_progress_argument() -> None:
    @honours_progress
    def work(n: int, progress: bool = True) -> bool:
        return _quiet()

    assert work(2) is False
    assert work(2, False) is True  # positional
    assert work(2, progress=False) is True
    assert not _quiet()  # restored afterwards


class _Spy(Metric):
    """Not registered: records whether bars opened during compute (and by the method it runs) are disabled."""

    name = "spy"
    seen: list[bool] = []

    def compute(self, job):  # type: ignore[no-untyped-def]
        _ = job.attributions
        _Spy.seen.append(_quiet())
        return torch.zeros(job.n), None, None, {}


def test_score_progress_false_reaches_bars_inside() -> None:
    net, x = residual_cnn(), inputs(2)
    _Spy.seen.clear()
    score(_Spy(), net, x, "saliency", progress=False)
    score(_Spy(), net, x, "saliency")
    assert _Spy.seen == [True, False]


def test_fractional_pass_counts_are_shown_as_whole_numbers(capsys) -> None:
    bar = progress_bar(total=200, desc="passes", mininterval=0, delay=0)
    bar.update(33.17571507423185)
    bar.refresh()
    bar.close()
    shown = capsys.readouterr().err
    assert "33/200" in shown and "33.1757" not in shown
