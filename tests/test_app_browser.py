"""The app in a real browser (headless Chromium driven by Playwright), as a user clicks through it: the overview of
the digits field store, a confusion-matrix cell, an image, a method computed on demand whose map then appears, the
map controls, and the numbers on each page checked against the store. HTML in class names and ids stays text.

Set CNNLENS_SCREENSHOTS=FOLDER to keep the screenshots (the README's are made so)."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

import cnnlens
from _app_store import METHODS, many_classes_store, named_store, store_copy
from _browser import browser
from _digits_session import trained_digits
from cnnlens.app import running
from cnnlens.store import open_store

pytestmark = pytest.mark.usefixtures("one_thread")
LOADED = "img => img.complete && img.naturalWidth > 0"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    here = tmp_path_factory.mktemp("browser-app")
    (here / "out").mkdir()
    root = store_copy(here).rename(here / "out" / "field-store")
    shots = tmp_path_factory.mktemp("screenshots")
    # served as README's `cnnlens view out/field-store`: the pages name it so (not by its temporary path)
    with (
        pytest.MonkeyPatch.context() as mp,
        running(_chdir(mp, here), model=trained_digits()) as base,
        browser() as chrome,
    ):
        tab = chrome.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(30_000)
        problems: list[str] = []
        tab.on("pageerror", lambda e: problems.append(str(e)))
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        yield tab, base, root, shots, problems
    keep = os.environ.get("CNNLENS_SCREENSHOTS")
    if keep:  # in 256 colours: a third of the size, the same picture for a page of flat colours
        from PIL import Image

        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in shots.glob("*.png"):
            Image.open(shot).convert("RGB").quantize(256).save(Path(keep) / shot.name, optimize=True)


def _chdir(mp: pytest.MonkeyPatch, folder: Path) -> str:
    mp.chdir(folder)
    return "out/field-store"


def _shot(tab, shots: Path, name: str, whole: bool = True) -> None:
    """A screenshot of the page (``whole``: all of it, else the window) once every picture has loaded (the grid's
    load lazily: made eager)."""
    tab.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    tab.wait_for_function(f"() => [...document.images].every({LOADED})")
    tab.screenshot(path=str(shots / f"{name}.png"), full_page=whole)
    assert (shots / f"{name}.png").stat().st_size > 10_000


def test_overview_then_a_cell_then_an_image_then_a_method_on_demand(app) -> None:
    tab, base, root, shots, problems = app
    store = open_store(root)
    t = store.images.to_pydict()
    y, p = np.array(t["label"]), np.array(t["predicted"])
    conf = np.array([v[0] for v in t["top_probabilities"]])

    # the overview: accuracy, no-information rate and every matrix cell are the store's
    tab.goto(base)
    assert tab.inner_text("footer code") == "out/field-store"  # as the user named it, not a temporary path
    assert float(tab.get_attribute("#accuracy", "data-value")) == pytest.approx(np.mean(y == p), abs=1e-12)
    assert tab.inner_text("#accuracy") == f"{100 * np.mean(y == p):.1f}%"
    assert float(tab.get_attribute("#nir", "data-value")) == pytest.approx(np.bincount(y).max() / len(y), abs=1e-12)
    cells = tab.eval_on_selector_all(
        "#matrix a[data-true]", "els => els.map(e => [+e.dataset.true, +e.dataset.pred, +e.textContent])"
    )
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (y, p), 1)
    assert sorted(map(tuple, cells)) == [(a, b, counts[a, b]) for a in range(10) for b in range(10) if counts[a, b]]
    _shot(tab, shots, "overview")

    # the most confused cell opens its images, most confident first
    errors = counts - np.diag(np.diag(counts))
    a, b = np.unravel_index(errors.argmax(), errors.shape)
    tab.click(f'#matrix a[data-true="{a}"][data-pred="{b}"]')
    tab.wait_for_url(f"**/images?true={a}&pred={b}")
    assert int(tab.get_attribute("#count", "data-count")) == counts[a, b]
    shown = tab.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")
    mask = (y == a) & (p == b)
    order = sorted(np.flatnonzero(mask), key=lambda i: (-conf[i], i))
    assert shown == [t["id"][i] for i in order]

    # one image: its top classes are the store's, and the stored maps are all shown
    first = shown[0]
    tab.click("#grid .card >> nth=0")
    tab.wait_for_selector("#image-id")
    assert tab.inner_text("#image-id") == first
    row = store.row(first)
    top = tab.eval_on_selector_all("#topk tbody tr", "els => els.map(e => [+e.dataset.class, +e.dataset.p])")
    assert top == [[c, q] for c, q in zip(row["top_classes"], row["top_probabilities"], strict=True)]
    assert tab.inner_text("#true-class") == str(a) and tab.inner_text("#predicted-class") == str(b)
    stored = tab.eval_on_selector_all("#maps figure:not(.missing)", "els => els.map(e => e.dataset.label)")
    assert stored == METHODS
    for label in METHODS:
        tab.wait_for_function(f"() => ({LOADED})(document.querySelector('figure[data-label={label}] img'))")

    # explain with occlusion (options from the registry's form), computed, stored, then shown
    tab.select_option("#method", "occlusion")
    tab.fill("input[name='option:window']", "4")
    tab.fill("input[name='option:stride']", "4")
    tab.click("#explain-go")
    tab.wait_for_selector("figure[data-label=occlusion]:not(.missing) img", timeout=120_000)
    tab.wait_for_function(f"() => ({LOADED})(document.querySelector('figure[data-label=occlusion] img'))")
    assert "done" in tab.inner_text("#job .job-state") and "occlusion" in tab.inner_text("#job .job-title")
    tab.wait_for_selector("#job[data-stored=stored]", state="attached")  # shown at once, stored behind
    after = open_store(root)
    assert after.added == {"occlusion": after.added["occlusion"]} and after.method_of("occlusion")[1]["window"] == 4
    image = after.dataset()[row["position"]][0]
    truth = cnnlens.explain(trained_digits(), [image], "occlusion", window=4, stride=4, target=int(b))
    got = after.map(first, "occlusion")
    np.testing.assert_allclose(got, truth.attributions[0].numpy(), atol=1e-3 * float(truth.attributions.abs().max()))

    # the map controls redraw every map and the colour bar
    tab.select_option("#look select[name=sign]", "all")
    tab.select_option("#look select[name=cmap]", "coolwarm")
    tab.wait_for_function(
        "() => [...document.querySelectorAll('img[data-map]')].every(i => i.src.includes('sign=all') && "
        "i.src.includes('cmap=coolwarm') && i.complete && i.naturalWidth > 0)"
    )
    assert tab.inner_text("#look .bar-low") == "−1 against" and "sign=all" in tab.get_attribute("#colorbar", "src")
    _shot(tab, shots, "image")

    # the confused pair: its errors beside correct images of both classes
    tab.goto(f"{base}pair?true={a}&pred={b}&method=grad_cam")
    assert len(tab.query_selector_all("#errors .card")) == min(8, counts[a, b])
    assert len(tab.query_selector_all("#correct-a .card")) == min(8, counts[a, a])
    _shot(tab, shots, "pair", whole=False)
    tab.goto(f"{base}images?correct=no&map=grad_cam&sort=-confidence")
    assert int(tab.get_attribute("#count", "data-count")) == int(np.sum(y != p))
    _shot(tab, shots, "grid", whole=False)
    assert problems == []


def test_html_in_names_and_ids_stays_text_in_the_browser(app, tmp_path) -> None:
    tab, _, _, _, problems = app
    evil = ["<img src=x onerror=alert(1)>", '"><script>alert(2)</script>', *[f"c{i}" for i in range(2, 10)]]
    ids = [f"<svg onload=alert({i})>" for i in range(8)]
    _, model, data = named_store(tmp_path, evil, ids, "evil")
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    with running(tmp_path / "s", model=model, data=data) as base:
        tab.goto(base)
        heads = tab.eval_on_selector_all("#matrix th.col span", "els => els.map(e => e.textContent)")
        tab.goto(f"{base}image?id={urllib.parse.quote(ids[0])}")
        title = tab.inner_text("#image-id")
        assert problems == []
        tab.goto(f"{base}image?id={urllib.parse.quote('<img src=x onerror=alert(3)>')}")  # a 404 page
        message = tab.inner_text("#message")
    assert dialogs == [] and evil[0] in heads and title == ids[0]
    assert "no image '<img src=x onerror=alert(3)>' in the store" in message
    problems.clear()


def test_a_thousand_classes_overview_fits_the_window_and_its_cells_open_their_images(app, tmp_path) -> None:
    """ImageNet's 1,000 class names (up to 30 characters): the matrix shows the 30 classes in the most errors, the
    page is no wider than the window, the matrix needs no scrolling, every class name is shown at 12 px or more
    (9 points) or cut with an ellipsis and given whole in its tooltip, and a cell opens exactly its images."""
    from cnnlens.app._pages import MATRIX_CLASSES
    from cnnlens.data._classes import imagenet_names

    tab, _, _, _, problems = app
    names = list(imagenet_names())
    root, model, data = many_classes_store(tmp_path, names)
    store = open_store(root)
    y, p = np.array(store.images.column("label").to_pylist()), np.array(store.images.column("predicted").to_pylist())
    with running(root, model=model, data=data) as base:
        tab.goto(base)
        width = tab.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        wrap = tab.eval_on_selector(".matrix-wrap", "e => [e.scrollWidth, e.clientWidth]")
        heads = tab.eval_on_selector_all(
            "#matrix th.col:not(.total) a, #matrix th.rowhead a",
            "els => els.map(e => [e.title, e.textContent, parseFloat(getComputedStyle(e).fontSize)])",
        )
        cells = tab.eval_on_selector_all(
            "#matrix a[data-true]", "els => els.map(e => [+e.dataset.true, +e.dataset.pred])"
        )
        a, b = max((c for c in cells if c[0] != c[1]), key=lambda c: (np.sum((y == c[0]) & (p == c[1])), c))
        tab.click(f'#matrix a[data-true="{a}"][data-pred="{b}"]')
        tab.wait_for_url(f"**/images?true={a}&pred={b}")
        count = int(tab.get_attribute("#count", "data-count"))
        shown = tab.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")
    assert width[0] <= width[1] == 1280 and wrap[0] <= wrap[1]
    assert len(heads) == 2 * MATRIX_CLASSES and min(size for _, _, size in heads) >= 12
    for title, text, _ in heads:  # "predicted NAME" / "true NAME": each a real class name, shown as it is
        name = title.split(" ", 1)[1]
        assert name in names and text == name
    assert count == len(shown) == np.sum((y == a) & (p == b)) > 0
    assert sorted(shown) == sorted(store.ids[i] for i in np.flatnonzero((y == a) & (p == b)))
    assert problems == []
