"""Notebook display: an Explanation, a Score, a Scorecard and an Evaluation give valid HTML and PNG (what Jupyter
shows), and their .plot() figures draw the object's own numbers."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens import quality
from cnnlens.evaluation import Evaluation
from test_contract import C, H, W, _model

pytestmark = pytest.mark.usefixtures("one_thread")


class _Checked(HTMLParser):
    """Parses HTML, failing on unbalanced tags; collects the text and the images' data."""

    VOID = {"img", "br", "meta"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.images: list[bytes] = []
        self.feed(text)
        self.close()
        assert self.stack == []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            src = dict(attrs)["src"]
            assert src.startswith("data:image/png;base64,")
            self.images.append(base64.b64decode(src.split(",", 1)[1], validate=True))
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def _png(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        im.load()
        return im.size


def _displays(obj: object) -> list[str]:
    """Check both displays Jupyter uses; return the HTML's text pieces."""
    png = obj._repr_png_()
    width, height = _png(png)
    assert 200 < width < 2000 and 100 < height < 3000
    page = _Checked(obj._repr_html_())
    assert len(page.images) == 1 and _png(page.images[0]) == (width, height)
    return page.text


@pytest.fixture(scope="module")
def run():
    model = _model().eval()
    x = torch.randn(3, C, H, W, generator=torch.Generator().manual_seed(0))
    return model, x


def test_explanation_displays_its_maps_over_its_inputs(run) -> None:
    model, x = run
    e = cnnlens.explain(model, x, "integrated_gradients", steps=8, progress=False)
    assert torch.equal(e.inputs, x)
    text = _displays(e)
    assert "integrated_gradients" in text and str(e.passes) in text
    fig = e.plot(max_images=2)
    maps = [a for a in fig.axes if a.get_images() and a.get_label() != "<colorbar>"]
    assert len(maps) == 4  # 2 images x (image, map)
    assert sum(a.get_label() == "<colorbar>" for a in fig.axes) == 1
    assert maps[0].get_ylabel().startswith(f"image 0: class {int(e.target[0])}")
    signed = cnnlens.viz.blended_heat_map(maps[0].get_images()[0].get_array(), e.attributions[0], sign="all")
    np.testing.assert_allclose(maps[1].get_images()[0].get_array(), signed, atol=1e-6)  # IG is signed: diverging
    plt.close("all")


def test_score_and_scorecard_display_their_numbers(run) -> None:
    model, x = run
    s = quality.score("deletion", model, x, "saliency", steps=4, progress=False)
    text = _displays(s)
    assert "deletion" in text and f"{s.mean:.4g}" in text
    fig = s.plot()
    mean_line = fig.axes[0].get_lines()[-1]
    np.testing.assert_allclose(mean_line.get_ydata(), s.curve.numpy().mean(0))
    plt.close(fig)
    card = quality.scorecard(model, x, ["saliency", "grad_cam"], metrics=["deletion", "detail"], progress=False)
    html = card._repr_html_()
    text = _displays(card)
    best = card.best("deletion")
    assert re.search(rf"<b>{card.value(best, 'deletion'):.4g}</b>", html)  # the best of the column in bold
    assert "saliency" in text and "grad_cam" in text
    fig = card.plot()
    bars = [p.get_width() for p in fig.axes[0].patches]
    assert bars == pytest.approx([card.value(m, "deletion") for m in card.methods])
    plt.close(fig)


def test_evaluation_displays_its_summary_and_confusion_matrix() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    ev = Evaluation(y, probs, ["cat", "dog", "fox"])
    text = _displays(ev)
    assert "66.7%" in text and "accuracy" in text
    fig = ev.plot()
    assert np.array_equal(fig.axes[0].get_images()[0].get_array(), ev.confusion_matrix)
    plt.close(fig)
    with pytest.raises(cnnlens.CnnlensError, match="kind must be one of"):
        ev.plot("pie")
    assert ev.show() is not None  # outside a notebook: the figure, to save
    plt.close("all")


def test_an_explanation_of_a_classifier_names_its_classes(run) -> None:
    from cnnlens.models import Classifier

    model, x = run
    names = [f"kind {k}" for k in range(int(model(x).shape[1]))]
    e = cnnlens.explain(Classifier(model, None, names), x, "saliency", progress=False)
    t = int(e.target[0])
    assert e.class_names == names
    maps = [a for a in e.plot(max_images=1).axes if a.get_images() and a.get_label() != "<colorbar>"]
    assert maps[0].get_ylabel().startswith(f"image 0: 'kind {t}' (class {t})")
    assert cnnlens.explain(model, x, "saliency", progress=False).class_names is None
    plt.close("all")
