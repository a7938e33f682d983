"""Figures: each returns a matplotlib Figure that saves as PNG and draws the numbers it is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from cnnlens import CnnlensError
from cnnlens.data import ArrayImages
from cnnlens.viz import (
    confusion_matrix_figure,
    feature_maps_figure,
    filters_figure,
    metrics_figure,
    roc_figure,
    samples_figure,
)
from test_evaluate import NAMES, _hand


def _png(fig: Figure, path: Path) -> tuple[int, int]:
    assert isinstance(fig, Figure)
    fig.savefig(path)
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def _images(fig: Figure) -> list[np.ndarray]:
    return [np.asarray(im.get_array()) for ax in fig.axes for im in ax.get_images()]


def test_confusion_matrix_figure_prints_every_count(tmp_path: Path) -> None:
    e = _hand()
    fig = confusion_matrix_figure(e)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in e.confusion_matrix.ravel()]
    assert np.array_equal(_images(fig)[0], e.confusion_matrix)
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    normalized = confusion_matrix_figure(e, normalize=True)
    assert normalized.axes[0].texts[8].get_text() == "2\n67%"  # fox: 2 of 3 right
    assert _png(fig, tmp_path / "cm.png")[0] > 100


def test_roc_and_metric_figures_draw_the_evaluation(tmp_path: Path) -> None:
    e = _hand()
    fig = roc_figure(e)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 + 2 + 1  # classes, micro and macro averages, chance diagonal
    assert np.array_equal(lines[0].get_xdata(), e.roc["cat"][0]) and np.array_equal(
        lines[0].get_ydata(), e.roc["cat"][1]
    )
    assert "AUC 0.900" in lines[0].get_label()
    bars = metrics_figure(e).axes[0].patches
    heights = [b.get_height() for b in bars]
    expected = [e.report[c][m] for m in ("precision", "recall", "f1") for c in NAMES]
    assert heights == pytest.approx(expected)
    _png(fig, tmp_path / "roc.png")


def test_samples_figure_rows_per_class() -> None:
    images = np.stack([np.full((4, 4), 10 * i, np.uint8) for i in range(6)])
    data = ArrayImages(images, [0, 1, 0, 1, 0, 2], ["a", "b", "c"])
    fig = samples_figure(data, per_class=2)
    shown = _images(fig)
    assert len(shown) == 5  # a: 2 of 3, b: 2, c: 1
    assert [int(s[0, 0, 0] * 255 + 0.5) for s in shown] == [0, 20, 10, 30, 50]
    only = samples_figure(data, indices=[3, 5])
    assert [int(s[0, 0, 0] * 255 + 0.5) for s in _images(only)] == [30, 50]
    with pytest.raises(CnnlensError, match="empty"):
        samples_figure(data, indices=[])


def test_filter_and_feature_map_grids(tmp_path: Path) -> None:
    w = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    shown = _images(filters_figure(w))
    assert len(shown) == 5 and shown[0].shape == (3, 3, 3)
    f0 = w[0].numpy().transpose(1, 2, 0)
    assert np.allclose(shown[0], (f0 - f0.min()) / (f0.max() - f0.min()), atol=1e-6)
    w8 = torch.randn(4, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    fig = filters_figure(w8, max_filters=2)
    gray = _images(fig)
    assert len(gray) == 2 and np.allclose(gray[1], w8[1].mean(0).numpy(), atol=1e-6)  # mean over input channels
    lim = float(w8[1].mean(0).abs().max())
    assert fig.axes[1].get_images()[0].get_clim() == pytest.approx((-lim, lim))  # symmetric: 0 is white
    assert [ax.get_title() for ax in fig.axes[:2]] == ["0", "1"] and fig._suptitle.get_text() == "2 filters"
    maps = torch.rand(1, 6, 5, 5)
    fig = feature_maps_figure(maps, max_maps=4)
    shown = _images(fig)
    assert len(shown) == 4 and np.allclose(shown[3], maps[0, 3].numpy())
    _png(fig, tmp_path / "maps.png")
    with pytest.raises(CnnlensError, match="feature maps"):
        feature_maps_figure(torch.rand(2, 6, 5, 5))
    with pytest.raises(CnnlensError, match="Nothing to draw"):
        feature_maps_figure(maps, max_maps=0)
    with pytest.raises(CnnlensError, match="Nothing to draw"):
        filters_figure(torch.zeros(0, 3, 3, 3))
