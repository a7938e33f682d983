"""The report read in a real browser, as a new user would: headless Chromium (Debian's package) driven by
Playwright. Nothing is wider than a 1,400 px window, labels in figures are at least 9 points at the size shown,
and every figure with a map has a colour bar beside each map (checked from the figure's layout, and by pixels).

Without Chromium these tests are skipped with the reason; with CNNLENS_REQUIRE_BROWSER=1 (set by CI) they fail
instead, so that a browser check can never be skipped silently where it must run (`_browser`, shared with the
app's browser tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _browser import browser

pytestmark = pytest.mark.usefixtures("one_thread")

WIDTH = 1400
MIN_PX = 9 * 96 / 72  # 9 points on a CSS page (96 px per inch): 12 px


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    """A report with every kind of figure and table: the model story on a subset of the digits (default methods
    and the scorecard) and a photo section with every registered method on two digits."""
    from _digits_session import trained_digits
    from cnnlens import methods
    from cnnlens.data import ArrayImages, digits
    from cnnlens.report import Report, photo_report
    from cnnlens.report._story import add_model_story

    model = trained_digits()

    def subset(ds, n: int) -> ArrayImages:
        idx = np.linspace(0, len(ds) - 1, n).astype(int)
        return ArrayImages(ds.images[idx], ds.labels[idx], ds.classes, ids=[ds.ids[i] for i in idx], name=ds.name)

    report = Report("browser check")
    add_model_story(
        report, model, {"test digits": subset(digits("test"), 40), "field digits": subset(digits("field"), 60)},
        max_groups=1, per_group=3, progress=False,
    )  # fmt: skip
    field = digits("field")
    photo_report(model, {"a": field[3][0], "b": field[9][0]}, report, methods=[m.name for m in methods() if m.maps_pixels],
                 progress=False)  # fmt: skip
    return report.write(tmp_path_factory.mktemp("browser") / "report.html")


@pytest.fixture(scope="module")
def page(report_file: Path):
    with browser() as chrome:
        tab = chrome.new_page(viewport={"width": WIDTH, "height": 900})
        tab.goto(report_file.as_uri())
        tab.wait_for_load_state("load")
        yield tab


def test_nothing_is_wider_than_the_window(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    too_wide = page.evaluate(
        """(width) => [...document.querySelectorAll('main *')]
            .filter(e => e.getBoundingClientRect().right > width + 0.5 || e.scrollWidth > e.clientWidth + 1
                         && getComputedStyle(e).overflowX !== 'visible')
            .map(e => e.tagName + ' ' + (e.textContent || '').trim().slice(0, 60))""",
        WIDTH,
    )
    assert too_wide == []
    tables = page.evaluate("document.querySelectorAll('table').length")
    assert tables >= 8  # the check covered the scorecard, the cost and agreement tables, ...


def _figures(page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll('img[data-layout]')].map(img => {
            const r = img.getBoundingClientRect();
            return {alt: img.alt, layout: JSON.parse(img.dataset.layout), natural: [img.naturalWidth,
                    img.naturalHeight], shown: [r.width, r.height], left: r.left + window.scrollX,
                    top: r.top + window.scrollY, maps: img.classList.contains('maps')};
        })"""
    )


def test_labels_are_at_least_9_points_where_they_are_shown(page) -> None:
    figures = _figures(page)
    assert len(figures) >= 15
    smallest = []
    for f in figures:
        layout = f["layout"]
        assert abs(layout["size"][0] - f["natural"][0]) <= 3 and abs(layout["size"][1] - f["natural"][1]) <= 3
        scale = f["shown"][0] / f["natural"][0]
        for *_, points in layout["texts"]:
            smallest.append((points * layout["dpi"] / 72 * scale, f["alt"]))
    worst = min(smallest)
    assert worst[0] >= MIN_PX - 0.05, f"type of {worst[0]:.1f} px in {worst[1]!r}"


def _ink_height(pixels: np.ndarray) -> int:
    """Rows of a crop that hold dark (text) pixels: the height of the text drawn there."""
    dark = (pixels[..., :3].astype(float).mean(axis=2) < 110).any(axis=1)
    rows = np.flatnonzero(dark)
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


def test_panel_labels_measured_in_the_screenshot(page, tmp_path: Path) -> None:
    """By pixels too: the method names above the maps of the compare panels are drawn tall enough on screen."""
    from PIL import Image

    panels = [f for f in _figures(page) if "every method's evidence" in f["alt"] or "top classes" in f["alt"]]
    assert panels
    measured = []
    for f in panels:
        scale = f["shown"][0] / f["natural"][0]
        layout = f["layout"]
        first_map = min(layout["maps"], key=lambda b: (b[1], b[0]))
        titles = [t for t in layout["texts"] if t[3] <= first_map[1] + 1 and t[0] >= first_map[0] - 2
                  and t[2] <= first_map[2] + 2 and first_map[1] - t[3] < 40]  # fmt: skip
        assert titles, f"no label above the first map of {f['alt']!r}"
        x0, y0, x1, y1, _ = titles[0]
        clip = {"x": f["left"] + x0 * scale, "y": f["top"] + y0 * scale, "width": (x1 - x0) * scale,
                "height": (y1 - y0) * scale}  # fmt: skip
        shot = tmp_path / "label.png"
        page.screenshot(path=str(shot), clip=clip, full_page=True)
        with Image.open(shot) as im:
            measured.append(_ink_height(np.asarray(im.convert("RGB"))))
    # a 12 px type has capitals of about 8.5 px; ascenders and descenders make a word taller
    assert min(measured) >= 8, measured


def test_a_colour_bar_beside_every_map(page) -> None:
    figures = _figures(page)
    with_maps = [f for f in figures if f["layout"]["maps"]]
    assert len(with_maps) >= 10
    for f in with_maps:
        assert f["maps"], f"{f['alt']!r} holds maps but is not marked as a map figure"
        bars = f["layout"]["colorbars"]
        assert bars, f"{f['alt']!r} has maps and no colour bar"
        for m in f["layout"]["maps"]:
            beside = [b for b in bars if b[0] >= m[2] - 1 and b[1] < m[3] and b[3] > m[1]]  # right of it, same rows
            assert beside, f"a map in {f['alt']!r} has no colour bar beside it"
    kinds = ("gradient and CAM methods", "perturbation methods", ": every method", "and 4 methods")
    explanations = [f for f in figures if f["alt"].endswith(kinds) or "every method's evidence" in f["alt"]]
    assert explanations and all(f["layout"]["maps"] for f in explanations)  # the map figures are all marked


def test_the_colour_bar_is_drawn_where_the_layout_says(page, tmp_path: Path) -> None:
    """The structure is honest: the pixels inside a colour bar's box run through the map's colours."""
    from PIL import Image

    f = next(f for f in _figures(page) if f["layout"]["colorbars"] and "every method" in f["alt"])
    scale = f["shown"][0] / f["natural"][0]
    x0, y0, x1, y1 = f["layout"]["colorbars"][0]
    clip = {"x": f["left"] + x0 * scale + 2, "y": f["top"] + y0 * scale + 2, "width": (x1 - x0) * scale - 4,
            "height": (y1 - y0) * scale - 4}  # fmt: skip
    shot = tmp_path / "bar.png"
    page.screenshot(path=str(shot), clip=clip, full_page=True)
    with Image.open(shot) as im:
        column = np.asarray(im.convert("RGB"))[:, (im.size[0] // 2)].astype(float)
    top, bottom = column[: len(column) // 8].mean(0), column[-len(column) // 8 :].mean(0)
    assert top[0] > top[2] + 60 and bottom[2] > bottom[0] + 60  # red (for) at the top, blue (against) below
    assert json.dumps(f["layout"])  # (the layout is plain JSON)


def test_without_a_browser_the_checks_skip_with_the_reason_or_fail_where_required(monkeypatch) -> None:
    import _browser

    monkeypatch.setattr(_browser, "chromium", lambda: None)
    monkeypatch.delenv("CNNLENS_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium found"):
        _browser.browser_or_skip()
    monkeypatch.setenv("CNNLENS_REQUIRE_BROWSER", "1")  # as CI sets it
    with pytest.raises(pytest.fail.Exception, match="required here"):
        _browser.browser_or_skip()
