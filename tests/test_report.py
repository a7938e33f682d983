"""The HTML report: a self-contained, escaped, well-formed file; notes computed exactly from numbers; the model
report names what `cnnlens.evaluate` measures; the photo report and the demo (scaled down) tell the story."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens import CnnlensError
from cnnlens.report import Report, model_report, photo_report, sized_options
from cnnlens.report._concepts import POOR_FIDELITY
from cnnlens.report._notes import (
    accuracy_note,
    advice_notes,
    agreement_note,
    class_notes,
    completeness_note,
    confidence_note,
    confusion_note,
    group_note,
    inside_note,
    most_confused,
    photo_note,
    recall_shift_note,
    shift_note,
    skipped_note,
    topk_overlap,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class _Parsed(HTMLParser):
    """Collects tags, attributes, text and the nesting of a document (and fails on unbalanced tags)."""

    VOID = {"meta", "img", "br", "link", "input", "hr"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.sections: dict[str, list[str]] = {}  # section id -> its non-blank text pieces
        self._section: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "section":
            self._section = dict(attrs)["id"]
            self.sections[self._section] = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._section is not None and data.strip():
            self.sections[self._section].append(data.strip())

    def all(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


def _png_file(path: Path, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def _decoded(src: str) -> bytes:
    assert src.startswith("data:image/png;base64,")
    return base64.b64decode(src.partition(",")[2], validate=True)


def test_report_is_self_contained_escaped_and_linked(tmp_path: Path) -> None:
    raw = _png_file(tmp_path / "a.png", (37, 23))
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    evil = "<script>alert('x')</script>"
    r = Report(f"Title {evil}")
    s = r.section("Results & more", intro=f"intro {evil}")
    s.figure(tmp_path / "a.png", caption=evil).figure(fig, "a figure")
    s.table([{"a": 0.123456, "b": None, "c": True}, {"a": 2, "d": evil}], caption="cap")
    s.notes(["first note", evil])
    r.section("Results & more").text(evil)  # same title: a distinct id
    path = r.write(tmp_path / "out")
    assert path == tmp_path / "out" / "report.html"
    html = path.read_text(encoding="utf-8")
    doc = _Parsed(html)
    assert doc.stack == [] and not doc.all("script")
    assert "".join(doc.text).count(evil) == 7  # title (in <title> and <h1>), intro, caption, cell, note, text
    assert html.count("alert") == 8  # ... and the caption once more as the image's alt attribute, escaped
    images = doc.all("img")
    assert len(images) == 2
    assert _decoded(images[0]["src"]) == raw and (images[0]["width"], images[0]["height"]) == ("37", "23")
    with Image.open(io.BytesIO(_decoded(images[1]["src"]))) as im:
        assert im.format == "PNG" and im.size == (int(images[1]["width"]), int(images[1]["height"]))
        assert 100 < im.size[0] < 400 and im.size[1] < im.size[0]  # a 2 x 1 inch figure at 90 dpi, cropped
    assert not plt.fignum_exists(fig.number)  # the figure was closed
    ids = [a["id"] for t, a in doc.tags if t == "section"]
    links = [a["href"] for a in doc.all("a")]
    assert ids == ["results-more", "results-more-2"] and links == ["#results-more", "#results-more-2"]
    assert not [a for t, a in doc.tags if "src" in a and not a["src"].startswith("data:")]
    assert not doc.all("link")
    cells = [d.strip() for d in doc.text if d.strip()]
    start = cells.index("cap")
    assert cells[start + 1 : start + 13] == ["a", "b", "c", "d", "0.1235", "–", "yes", "–", "2", "–", "–", evil]


def test_report_rejects_what_it_cannot_embed(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("not a png")
    s = Report("t").section("s")
    with pytest.raises(CnnlensError, match="Not a PNG"):
        s.figure(tmp_path / "x.png")
    with pytest.raises(CnnlensError, match="does not exist"):
        s.figure(tmp_path / "missing.png")
    with pytest.raises(CnnlensError, match="row 1 has 1 cells; expected 2"):
        s.table([[1, 2], [3]], columns=["a", "b"])
    with pytest.raises(CnnlensError, match="list of sentences"):
        s.notes("one string")


def test_notes_are_exact_sentences() -> None:
    assert accuracy_note("field digits", 0.519, 0.1, 360) == (
        "On the field digits (360 images) the model is right 51.9% of the time; always answering the most common "
        "class would be right 10.0% of the time."
    )
    cm = np.array([[5, 1, 0], [0, 4, 3], [12, 3, 9]])
    pairs = most_confused(cm, ["3", "5", "8"], n=3)
    assert pairs == [("8", "3", 12), ("5", "8", 3), ("8", "5", 3)]  # ties in row-major order
    assert shift_note({"test digits": 0.978, "field digits": 0.519}, pairs) == (
        "Accuracy falls from 97.8% on the test digits to 51.9% on the field digits; the most common error there "
        "is 8 read as 3 (12 cases)."
    )
    assert shift_note({"a": 0.5}) is None
    assert confusion_note(pairs, 19) == (
        "The most common mistakes: 8 read as 3 (12 cases), 5 read as 8 (3), 8 read as 5 (3); together 18 of the "
        "19 errors (95%)."
    )
    report = {
        "3": {"precision": 0.95, "recall": 0.30, "support": 10},
        "5": {"precision": 0.40, "recall": 0.95, "support": 10},
        "8": {"precision": 0.85, "recall": 0.45, "support": 10},
    }
    assert class_notes(report) == [
        "The classes it recognises least often: 3 (30% found), 8 (45% found).",
        "The answers to trust least: when it says 5 (40% right), 8 (85% right).",
    ]
    assert recall_shift_note({"3": 0.9, "5": 0.9, "8": 1.0}, {"3": 0.3, "5": 0.95, "8": 0.5}, "field digits") == (
        "The classes that suffer most on the field digits: 3 (90% → 30% found), 8 (100% → 50% found)."
    )
    assert confidence_note(0.94, 0.99) == (
        "The model is 94% sure on average when it is wrong and 99% when it is right: a confident answer is not "
        "a safe answer."
    )
    assert confidence_note(0.55, 0.9).endswith("90% when it is right: low confidence is a useful warning sign.")
    assert confidence_note(float("nan")) is None
    wrong, right = np.array([0.95, 0.99, 0.6]), np.array([0.99] * 16 + [0.5] * 4)
    assert advice_notes({"test digits": 0.978, "field digits": 0.519}, wrong, right) == [
        "The model was not made for images like the field digits (46 points less accurate than on the test "
        "digits): add such images to its training data, or change the training images to look like them, then "
        "run this report again.",
        "Checking the answers given less than 90% probability (22% of the images) would catch 1 of its 3 errors (33%).",
    ]  # 5 of 23 images are below 90%; one of the three errors
    assert advice_notes({"a": 0.9}, np.array([0.98, 0.995]), right) == [
        "Do not rely on the model's confidence to catch its mistakes: all 2 of its errors were given at least 90% "
        "probability, so checking its uncertain answers would catch none of them; check a random sample of its "
        "answers instead, and look at the error groups above."
    ]
    assert advice_notes({"a": 0.9, "b": 0.85}) == []
    assert skipped_note("data", []) is None
    assert skipped_note("folder", [("d/b.png", "truncated file"), ("d/c.png", "not an image")], shown=1) == (
        "Skipped 2 unreadable file(s) of the folder, left out of every number: d/b.png (truncated file); and 1 more "
        "(see metrics.json)."
    )
    assert agreement_note("grad_cam", "integrated_gradients", 0.63) == (
        "Grad-CAM and integrated gradients agree on 63% of the 10% most important pixels."
    )
    assert inside_note("classifier", "3", "8", 0.25, 0.75) == (
        "In the features the final layer (classifier) decides from, the misread 3 looks more like a correct 8: "
        "correlation 0.25 with a correct 3, 0.75 with a correct 8."
    )
    assert completeness_note({"deeplift": 0.0, "gradient_shap": 0.641, "integrated_gradients": 0.303, "x": None}) == (
        "GradientSHAP and integrated gradients do not add up here: the attributions miss the score difference "
        "they explain by 64% and 30% on average, so treat their maps as approximate (more steps or samples would "
        "help, at a cost)."
    )
    assert completeness_note({"integrated_gradients": 0.5, "deeplift": 0.01}).startswith(
        "Integrated gradients does not add up here: the attributions miss the score difference they explain by 50%"
    )
    three = completeness_note({"a_b": 0.2, "c": 0.3, "d": 0.4})
    assert three.startswith("A b, c and d do not add up") and "by 20%, 30% and 40% on average" in three
    assert completeness_note({"deeplift": 0.05}) is None
    assert group_note("3", "9", 22, 0.62) == "3 read as 9: 22 cases, given 62% probability on average."
    assert group_note("3", "9", 1, 0.5) == "3 read as 9: 1 case, given 50% probability on average."
    assert photo_note("chelsea", [("tabby", 0.62), ("tiger cat", 0.2)]) == (
        "chelsea: the model answers 'tabby' (62%), then 'tiger cat' (20%)."
    )


def test_topk_overlap_counts_shared_top_pixels() -> None:
    a = np.arange(16, dtype=float).reshape(4, 4)  # top 4 (25%): positions 12..15
    b = a.copy()
    b.ravel()[[12, 13]] = 0.0  # positions 14, 15 stay; 10, 11 take the freed places
    assert topk_overlap(a, b, 0.25) == 0.5
    assert topk_overlap(a, -a, 0.25) == 1.0  # importance is the magnitude
    assert topk_overlap(np.stack([a, a]), b[None], 0.25) == 0.5  # channels summed
    assert topk_overlap(a, a[::-1], 0.25) == 0.0
    with pytest.raises(CnnlensError, match="same size"):
        topk_overlap(a, a[:2])
    from cnnlens.report._methods import agreement, agreement_per_image

    maps = {"m1": np.stack([a, a]), "m2": np.stack([b, a[::-1]]), "m3": np.stack([-a, a])}
    assert agreement_per_image(maps, 0.25)[("m1", "m2")].tolist() == [0.5, 0.0]
    assert agreement(maps, 0.25) == {("m1", "m2"): 0.25, ("m1", "m3"): 1.0, ("m2", "m3"): 0.25}


def test_report_grids_draw_each_signed_map_over_the_gray_image_with_one_colour_bar() -> None:
    from cnnlens.report._figures import agreement_figure, cluster_order, maps_grid, photo_grid
    from cnnlens.viz import blended_heat_map, figure_layout

    rgb = np.linspace(0, 1, 8 * 8 * 3).reshape(8, 8, 3)
    small = np.arange(16.0).reshape(4, 4)  # a map at a quarter of the image's resolution
    full = -np.arange(64.0).reshape(1, 8, 8)
    fig = maps_grid([rgb, rgb[..., 0]], ["a", "b"], {"saliency": [full, full], "grad_cam": [small, small]})
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert np.array_equal(shown[0].get_images()[0].get_array(), rgb)
    signed = {"sign": "all", "cmap": "RdBu_r", "alpha": 0.6}
    np.testing.assert_allclose(shown[1].get_images()[0].get_array(), blended_heat_map(rgb, full, **signed))
    np.testing.assert_allclose(shown[2].get_images()[0].get_array(), blended_heat_map(rgb, small, **signed))
    gray = np.repeat(rgb[..., 0][..., None], 3, axis=2)  # a gray image is drawn under its map too
    np.testing.assert_allclose(shown[4].get_images()[0].get_array(), blended_heat_map(gray, full, **signed))
    assert [ax.get_title() for ax in shown[:3]] == ["a", "saliency", "Grad-CAM"]
    layout = figure_layout(fig, 96)
    assert len(layout["maps"]) == 4 and len(layout["colorbars"]) == 1  # one shared scale, to the right
    assert all(bar[0] >= m[2] for bar in layout["colorbars"] for m in layout["maps"])
    fig = photo_grid(rgb, {"saliency": full[0], "grad_cam": small}, [("tabby", 0.5)], title="cat", columns=2)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == ["cat: tabby 50%", "saliency", "Grad-CAM"]
    spare = [ax for ax in fig.axes if not ax.get_images() and ax.get_label() != "<colorbar>"]
    assert len(spare) == 1 and not spare[0].axison  # the spare cell is blank
    similarity = np.array([[1, 0.1, 0.9, 0.2], [0.1, 1, 0.15, 0.8], [0.9, 0.15, 1, 0.1], [0.2, 0.8, 0.1, 1]])
    order = cluster_order(similarity)
    assert {frozenset(order[:2]), frozenset(order[2:])} == {frozenset({0, 2}), frozenset({1, 3})}
    pairs = {(a, b): similarity[i, j] for i, a in enumerate("abcd") for j, b in enumerate("abcd") if i < j}
    fig = agreement_figure(list("abcd"), pairs, 0.1)
    matrix = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(matrix, similarity[np.ix_(order, order)])
    plt.close("all")


def test_sized_options_scale_with_the_image() -> None:
    assert sized_options("occlusion", (224, 224)) == {"window": 32, "stride": 32}
    assert sized_options("occlusion", (32, 32)) == {"window": 4, "stride": 2}
    assert sized_options("shapley_sampling", (32, 32)) == {"mask": "grid:8", "samples": 2}
    assert sized_options("kernel_shap", (224, 224)) == {"mask": "slic:30", "samples": 64}
    assert sized_options("saliency", (224, 224)) == {}


def test_method_choices_are_checked_and_sized() -> None:
    from cnnlens.report._method_choice import resolve_methods

    chosen = resolve_methods({"occlusion": {"window": 8}, "saliency": None}, ["lime"], (32, 32))
    assert chosen == {"occlusion": {"window": 8, "stride": 2}, "saliency": {}}  # user options over the sized ones
    assert resolve_methods(None, ["rise"], (32, 32)) == {"rise": {"samples": 128}}
    assert resolve_methods("rise", [], (32, 32)) == {"rise": {"samples": 128}}
    with pytest.raises(CnnlensError, match="unknown method 'gradcam'. Did you mean grad_cam"):
        resolve_methods(["gradcam"], [], (32, 32))
    with pytest.raises(CnnlensError, match="options of occlusion must be a mapping"):
        resolve_methods({"occlusion": 8}, [], (32, 32))
    with pytest.raises(CnnlensError, match="names or a mapping"):
        resolve_methods(5, [], (32, 32))
    for name in ("layer_conductance", "neuron_gradient"):  # not maps of a class over the pixels
        with pytest.raises(CnnlensError, match=f"{name} attribute.*leave them out.*cnnlens.explain"):
            resolve_methods(["saliency", name], [], (32, 32))


@pytest.fixture(scope="module")
def digits_model():
    from _digits_session import trained_digits

    return trained_digits()


def _subset(ds, n: int):
    from cnnlens.data import ArrayImages

    idx = np.linspace(0, len(ds) - 1, n).astype(int)
    return ArrayImages(ds.images[idx], ds.labels[idx], ds.classes, ids=[ds.ids[i] for i in idx], name=ds.name)


def test_model_report_tells_the_evaluation(digits_model, tmp_path: Path) -> None:
    from cnnlens.data import digits

    clean, field = _subset(digits("test"), 60), _subset(digits("field"), 80)
    module = digits_model.module
    before = {k: v.clone() for k, v in module.state_dict().items()}
    flags = [
        (m.training, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in module.modules()
    ]
    grads = [(p.requires_grad, p.grad is None) for p in module.parameters()]
    path = model_report(
        digits_model, {"clean digits": clean, "field digits": field}, tmp_path / "rep",
        methods=["saliency", "grad_cam"], perturbation_methods=["occlusion"], scorecard=False, max_groups=2,
        per_group=2, progress=False,
    )  # fmt: skip
    html = path.read_text(encoding="utf-8")
    doc = _Parsed(html)
    text = " ".join(doc.text)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is left exactly as it was
    assert flags == [
        (m.training, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in module.modules()
    ]
    assert grads == [(p.requires_grad, p.grad is None) for p in module.parameters()]
    ev = cnnlens.evaluate(digits_model, field, progress=False)
    ev_clean = cnnlens.evaluate(digits_model, clean, progress=False)
    assert digits_model.name in text
    assert f"{100 * ev.accuracy:.1f}%" in text and f"{100 * ev_clean.accuracy:.1f}%" in text
    assert "classes 10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in re.sub(r"\s+", " ", text)
    counts = {(t, p): len(ev.groups.confused(t, p)) for t in ev.classes for p in ev.classes if t != p}
    top = max(counts.values())
    t, p = min((k for k, v in counts.items() if v == top), key=lambda k: (int(k[0]), int(k[1])))
    assert f"{t} read as {p} ({top} cases)" in text  # the most confused pair, from Evaluation.groups
    titles = [a for t_, a in doc.tags if t_ == "section"]
    assert [a["id"] for a in titles][:6] == [
        "overview", "results-per-class", "where-it-fails", "inside-the-model",
        f"what-the-model-looks-for-in-class-{t}-and-in-{p}", "explanations",
    ]  # fmt: skip
    saved_concepts = re.findall(r"fidelity (-?[0-9.]+) \(R", text)  # the concepts of t and p
    if all(float(f) >= POOR_FIDELITY for f in saved_concepts):  # the concepts the error shares with the wrong class
        assert f"The {t} read as {p} shows {p}'s" in text
    else:  # concepts that reproduce too little of the score are shown, never used to explain the error
        assert f"The {t} read as {p} shows" not in text and "reproduce too little of the class score" in text
    assert titles[-1]["id"] == "what-this-means"
    captions = [a["alt"] for a in doc.all("img")]
    assert captions[:4] == [
        "Confusion matrix on the clean digits", "Confusion matrix on the field digits",
        "Precision, recall and F1 per class on the field digits", "ROC curves on the field digits",
    ]  # fmt: skip
    assert captions[4].startswith(f"{t} read as {p} ({top}): errors")
    assert sum(c.endswith("gradient and CAM methods") for c in captions) == 2
    assert sum(c.endswith("perturbation methods") for c in captions) == 2
    inside = [c for c in captions if c.startswith("features.")]
    shown = [f"{t} read as {p}"] + [f"correct {c}" for c in (t, p) if len(ev.groups.true_positives[c])]
    assert inside == ["features.0.0: what the first layer looks for"] + [
        f"features.{k}.0: {', '.join(shown)}" for k in range(3)
    ]  # the first layer's filters, then each conv layer's top channels for the error and correct images
    # the channels of the last conv that push the most confident error towards p: gradient x activation by hand
    rows = ev.groups.confused(t, p)
    worst = int(rows[np.argmax(ev.probabilities[rows, ev.y_pred[rows]])])
    x = digits_model.preprocess([field[int(ev.positions[worst])][0]])
    layer = cnnlens.models.last_conv_layer(digits_model)
    store = {}
    handle = module.get_submodule(layer).register_forward_hook(
        lambda _m, _a, out: store.setdefault("a", out.detach().requires_grad_(True))
    )
    try:
        module.eval()
        (g,) = torch.autograd.grad(module(x)[0, ev.classes.index(p)], store["a"])
    finally:
        handle.remove()
    totals = (store["a"] * g)[0].flatten(1).sum(1).detach()
    strongest = totals.argsort(descending=True)[:3].tolist()
    assert any(c.startswith(f"Channels of {layer} that push the misread {t} towards '{p}'") for c in captions)
    assert f"the channels of {layer} that add most to the score of '{p}' are {strongest[0]} (" in text
    assert f"), {strongest[1]} (" in text and f"), {strongest[2]} (" in text
    for img in doc.all("img"):
        with Image.open(io.BytesIO(_decoded(img["src"]))) as im:
            assert im.size == (int(img["width"]), int(img["height"]))
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["focus"] == "field digits" and metrics["data"]["field digits"]["accuracy"] == round(ev.accuracy, 6)
    assert metrics["groups"][0]["true"] == t and metrics["groups"][0]["count"] == top
    assert set(metrics["explanations"]["methods"]) == {"saliency", "grad_cam", "occlusion"}


def test_model_report_scorecard_section_shows_the_scorecard(digits_model, tmp_path: Path) -> None:
    from cnnlens.data import digits

    path = model_report(
        digits_model, _subset(digits("field"), 40), tmp_path, methods=["saliency"], perturbation_methods=["occlusion"],
        max_groups=1, per_group=1, progress=False,
    )  # fmt: skip
    from cnnlens.report._words import column_title, column_words

    saved = json.loads((tmp_path / "metrics.json").read_text())
    card = saved["scorecard"]
    cells = _Parsed(path.read_text(encoding="utf-8")).sections["how-much-to-trust-the-explanations"]
    for title, meaning in column_words(card["columns"]).items():  # every column explained in words, in place
        assert cells[cells.index(title) + 1] == meaning
    start = cells.index("method")
    header = cells[start : start + 1 + len(card["columns"])]
    assert [h.rstrip(" ↑↓") for h in header[1:]] == [column_title(c) for c in card["columns"]]
    for column, higher in card["higher_is_better"].items():  # "best" only as the images and seeds allow
        if higher is not None and "seconds" not in column and "passes" not in column:
            notes = [n for n in saved["notes"] if n.startswith(f"On {column_title(column)} ")]
            assert len(notes) == 1 and ("does best" in notes[0] or "no method is clearly best" in notes[0])
    body = cells[start + len(header) : start + len(header) * 3]
    assert body[0] == "saliency" and body[len(header)] == "occlusion"
    assert card["seeds"] == [0, 1]
    for r, method in enumerate(card["methods"]):
        for c, column in enumerate(card["columns"], start=1):
            shown, value = body[r * len(header) + c], card["means"][column][method]
            assert (shown == "–") if value is None else float(shown) == pytest.approx(value, rel=1e-3, abs=1e-12)
            seeded = np.array(card["per_seed"][method][column], dtype=float)  # (seeds, images), None -> nan
            assert seeded.shape[0] == 2 and (value is None or value == pytest.approx(np.nanmean(seeded)))


def test_model_report_rejects_bad_input(digits_model, tmp_path: Path) -> None:
    with pytest.raises(CnnlensError, match="unknown method 'gradcam'. Did you mean grad_cam"):
        model_report(digits_model, "digits:test", tmp_path, methods=["gradcam"], progress=False)
    with pytest.raises(CnnlensError, match="empty mapping"):
        model_report(digits_model, {}, tmp_path, progress=False)
    with pytest.raises(CnnlensError, match="needs a dataset of images"):
        model_report(digits_model, (torch.zeros(2, 3, 32, 32), [0, 1]), tmp_path, progress=False)
    with pytest.raises(CnnlensError, match="at least 1"):
        model_report(digits_model, "digits:test", tmp_path, max_groups=0, progress=False)
    with pytest.raises(CnnlensError, match="unknown model_report option 'method'. Did you mean methods"):
        model_report(digits_model, "digits:test", tmp_path, method=["saliency"], per_groups=2, progress=False)
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "metrics.json").exists()


def test_photo_report_shows_top_classes_and_every_method(digits_model, tmp_path: Path) -> None:
    from cnnlens.data import digits

    ds = digits("field")
    photos = {"first": ds[0][0], "second": ds[5][0]}
    r = photo_report(digits_model, photos, methods=["saliency", "grad_cam", "occlusion"], top_k=3, progress=False)
    doc = _Parsed(r.write(tmp_path / "p.html").read_text(encoding="utf-8"))
    cells = [d.strip() for d in doc.text if d.strip()]
    predictions = digits_model.predict(digits_model.preprocess(list(photos.values())), top_k=3)
    for name, top in zip(photos, predictions, strict=True):
        start = cells.index(f"Photo: {name}", cells.index("Contents") + 3)
        table = cells[start : start + 20]
        expected = [x for k, (_, c, p) in enumerate(top) for x in (str(k + 1), c, f"{100 * p:.1f}%")]
        assert expected == table[table.index("probability") + 1 :][: len(expected)]
    with pytest.raises(CnnlensError, match="non-empty mapping"):
        photo_report(digits_model, {}, progress=False)
    captions = [a["alt"] for a in doc.all("img")]
    assert "first: every method" in captions and "second: every method" in captions
    assert "first: the photo, its top classes and 3 methods" in captions  # compare_panel: saliency, Grad-CAM, occlusion


def test_demo_scaled_down_tells_both_stories(digits_model, lite0, tmp_path: Path, monkeypatch) -> None:
    from cnnlens.data import digits, sample_image
    from cnnlens.report import demo

    path = demo(
        tmp_path, progress=False, photos=["chelsea"], methods=["saliency", "grad_cam"], digits_methods=["saliency"],
        digits_perturbation_methods=["occlusion"], scorecard=False, max_groups=1, per_group=2,
    )  # fmt: skip
    text = " ".join(_Parsed(path.read_text(encoding="utf-8")).text)
    field = cnnlens.evaluate(digits_model, digits("field"), progress=False)
    test = cnnlens.evaluate(digits_model, digits("test"), progress=False)
    assert f"Accuracy falls from {100 * test.accuracy:.1f}% on the test digits to {100 * field.accuracy:.1f}%" in text
    top = lite0.predict([sample_image("chelsea")], top_k=1)[0][0]
    assert f"chelsea: the model answers '{top[1]}' ({100 * top[2]:.0f}%)" in text


def test_texts_match_data_without_mistakes_and_unlabelled_photos(digits_model, tmp_path: Path) -> None:
    from cnnlens.data import ArrayImages, digits

    test = digits("test")
    ev = cnnlens.evaluate(digits_model, test, progress=False)
    right = [i for i in range(len(test)) if ev.y_pred[i] == ev.y_true[i]][:30]
    clean = ArrayImages(test.images[right], test.labels[right], test.classes, name="clean digits")
    path = model_report(digits_model, clean, tmp_path / "clean", methods=["saliency"],
                        perturbation_methods=["occlusion"], scorecard=False, progress=False)  # fmt: skip
    doc = _Parsed(path.read_text(encoding="utf-8"))
    text = " ".join(doc.text)
    assert "The model makes no mistakes on the 30 images of the clean digits." in text
    assert "It makes no mistakes on these 30 images, so the maps above show what its right answers rest on" in text
    assert "misread" not in text and "read as" not in text  # nothing speaks of errors that are not there
    captions = [a["alt"] for a in doc.all("img")]
    assert "Correct images, one per class: gradient and CAM methods" in captions
    assert not [c for c in captions if c.startswith("correct ")]  # no grid titled by one class it does not show
    photos = {"first": test[0][0], "second": test[5][0]}
    r = photo_report(digits_model, photos, methods=["saliency", "grad_cam"], progress=False)
    words = " ".join(_Parsed(r.to_html()).text)
    assert "no true label" in words and not re.search(r"misread|mistake|errors|wrong", words)


def test_accuracy_row_leaves_out_top3_where_it_cannot_fall_below_100_percent() -> None:
    from cnnlens.evaluation import Evaluation
    from cnnlens.report._story import accuracy_row

    rng = np.random.default_rng(0)
    for k in (3, 4):
        probs = rng.dirichlet(np.ones(k), size=12)
        ev = Evaluation(np.arange(12) % k, probs, [f"c{i}" for i in range(k)], skipped=[("x.png", "truncated")])
        row = accuracy_row("data", ev)
        assert ("top-3 accuracy" in row) == (k > 3)  # three classes: top-3 accuracy is 100% by construction
        assert row["skipped"] == 1 and row["images"] == 12
        assert row["macro AUC"] == f"{ev.roc_auc['macro']:.3f}" and len(row["macro F1"].split(".")[1]) == 3


def test_a_method_and_its_duplicate_are_scored_once_and_never_compared(digits_model, tmp_path: Path) -> None:
    from cnnlens.data import digits

    path = model_report(
        digits_model, _subset(digits("field"), 40), tmp_path, methods=["saliency"],
        perturbation_methods={"occlusion": {"window": 4, "stride": 4}, "feature_ablation": {"mask": "grid:4"}},
        max_groups=1, per_group=1, progress=False,
    )  # fmt: skip
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["explanations"]["methods"]["feature_ablation"]["same_as"] == "occlusion"  # 4-pixel squares both
    assert saved["scorecard"]["methods"] == ["saliency", "occlusion"]  # scored once
    cells = _Parsed(path.read_text(encoding="utf-8")).sections["how-much-to-trust-the-explanations"]
    assert "occlusion = feature ablation" in cells and "feature ablation" not in cells
    for note in [n for n in saved["notes"] if n.startswith("On ")]:  # the "best" notes name the merged pair only
        assert "feature ablation" not in note.replace("occlusion = feature ablation", ""), note


def test_concepts_with_poor_fidelity_are_flagged_not_used() -> None:
    from types import SimpleNamespace

    from cnnlens.report._concepts import POOR_FIDELITY, _fidelity_note

    good = SimpleNamespace(n_concepts=5, fidelity=0.83, importance=np.array([0.4, 0.2]))
    assert _fidelity_note("3", good) == (
        "The model's score for 3 depends most on concept 0 (it is involved in 40% of the score's variance when "
        "concepts are dimmed at random); the 5 concepts reproduce the class score with fidelity 0.83 (R\u00b2; 1 = "
        "all of it)."
    )
    bad = SimpleNamespace(n_concepts=5, fidelity=-0.16, importance=np.array([0.4, 0.2]))
    assert POOR_FIDELITY > 0 and _fidelity_note("3", bad) == (
        "For 3, the 5 concepts reproduce the class score with fidelity -0.16 (R\u00b2; 1 = all of it, below 0: "
        "worse than a constant): too little to rely on what they show."
    )
