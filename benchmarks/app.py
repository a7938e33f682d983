"""The local web app: time to first paint in headless Chromium, and an on-demand computation through the app beside
the same API call.

First paint: the overview, and one image page with 5 stored maps, of a store of the digits field split (saliency,
input x gradient, guided backprop, Grad-CAM, Grad-CAM++); each page opened in a fresh tab, a different image each
time (its maps drawn on the server, nothing cached); Chromium's ``first-contentful-paint`` after navigation start,
and when the page with every picture has loaded. Goal: first paint under 1 s.

On demand: Grad-CAM on EfficientNet-Lite0 for one photo through the app (the JSON request, the computation in the
app's thread, the finished computation seen by the page, which then shows the map from memory) against
``cnnlens.explain(model, [photo], "grad_cam")`` (the map only) and ``Store.explain`` (the map computed and stored
with the store's guarantees), interleaved, each photo once (a stored map is not computed again). The app stores
its result behind, in its writer thread, with the same guarantees: that write is waited for after each timed
request, untimed (so it never overlaps the next timing), and its time is printed apart. Goal: the app's time at
most 10% over the API call's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

import cnnlens
from _common import log

METHODS = ["saliency", "input_x_gradient", "guided_backprop", "grad_cam", "grad_cam_pp"]
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def _paint(chrome, url: str) -> tuple[float, float]:
    """(first contentful paint, load event end) in seconds after navigation start, in a fresh tab."""
    tab = chrome.new_page(viewport={"width": 1280, "height": 900})
    try:
        tab.goto(url, wait_until="load")
        tab.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length > 0")
        fcp = tab.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        load = tab.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        return fcp / 1000, load / 1000
    finally:
        tab.close()


def first_paint(repeats: int, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    from cnnlens.app import running

    path = next((c for c in ("/usr/bin/chromium", shutil.which("chromium")) if c and Path(c).exists()), None)
    if path is None:
        print("no Chromium found (Debian: apt-get install -y chromium): no first-paint figures")
        return
    model = cnnlens.load_model("digits_cnn")
    log(f"a store of the digits field split with {len(METHODS)} methods ...")
    cnnlens.run(model, "digits:field", METHODS, out=folder / "digits", progress=False)
    ids = cnnlens.open_store(folder / "digits").ids
    with running(folder / "digits", model=model) as base, sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=path, args=ARGS)
        try:
            _paint(chrome, base)  # the browser's own start-up
            overview = [_paint(chrome, base) for _ in range(repeats)]
            pages = [_paint(chrome, f"{base}image?id={urllib.request.quote(ids[5 + 7 * i])}") for i in range(repeats)]
        finally:
            chrome.close()
    print(f"{'':38s}{'first paint':>12s}{'all loaded':>12s}   (median of {repeats}, seconds)")
    for name, times in (("overview", overview), (f"image page, {len(METHODS)} stored maps", pages)):
        fcp, load = (statistics.median(t[i] for t in times) for i in (0, 1))
        print(f"{name:38s}{fcp:12.3f}{load:12.3f}")
    worst = max(statistics.median(t[0] for t in times) for times in (overview, pages))
    print(f"first paint: {worst:.3f} s at most (goal under 1 s)")


def _photos(n: int) -> tuple[np.ndarray, list[str]]:
    """``n`` different 256 x 256 photos: the sample images, mirrored and turned."""
    from cnnlens.data import sample_images

    base = [np.asarray(im.convert("RGB").resize((256, 256))) for im in sample_images().values()]
    variants = [lambda a: a, lambda a: a[:, ::-1], lambda a: np.rot90(a), lambda a: a[::-1]]
    out = [v(b) for v in variants for b in base][:n]
    return np.ascontiguousarray(np.stack(out)), [f"photo{i}" for i in range(len(out))]


def _post(base: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + "api/explain", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as r:
        return json.loads(r.read())


def _until_done(base: str) -> dict:
    while True:
        with urllib.request.urlopen(base + "api/job?wait=30") as r:  # answers when the computation ends
            job = json.loads(r.read())["job"]
        if job["state"] != "running":
            return job


def on_demand(repeats: int, folder: Path) -> None:
    from cnnlens.app import create_app, running
    from cnnlens.data import ArrayImages

    model = cnnlens.load_model("efficientnet_lite0")
    images, ids = _photos(repeats + 1)
    data = ArrayImages(images, np.zeros(len(images), dtype=int), model.class_names, ids=ids, name="photos")
    log(f"Grad-CAM on Lite0 through the app and by the API, {repeats} photos ...")
    cnnlens.run(model, data, [], out=folder / "photos", progress=False)
    shutil.copytree(folder / "photos", folder / "photos-api")
    store = cnnlens.open_store(folder / "photos-api")
    store.model(model), store.dataset(data)  # checked once, as the app does
    times: dict[str, list[float]] = {"api": [], "store": [], "app": [], "behind": []}
    app = create_app(folder / "photos", model=model, data=data)
    pending = app.app.state.cnnlens.pending
    with running(folder / "photos", app=app) as base:
        _post(base, {"id": ids[0], "method": "grad_cam"})  # warm-up: the app checks the model's weights once
        assert _until_done(base)["state"] == "done" and pending.flush(60)
        cnnlens.explain(model, images[:1], "grad_cam")
        store.explain(ids[0], "grad_cam", progress=False)
        for i in range(1, repeats + 1):  # interleaved, so that a busy moment of the machine hits all three
            start = time.perf_counter()
            cnnlens.explain(model, images[i : i + 1], "grad_cam")
            times["api"].append(time.perf_counter() - start)
            start = time.perf_counter()
            store.explain(ids[i], "grad_cam", progress=False)
            times["store"].append(time.perf_counter() - start)
            start = time.perf_counter()
            _post(base, {"id": ids[i], "method": "grad_cam"})
            job = _until_done(base)
            times["app"].append(time.perf_counter() - start)
            assert job["state"] == "done", job
            start = time.perf_counter()
            assert pending.flush(60) and not pending.failures, pending.failures  # stored behind, untimed
            times["behind"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'':44s}{'median s':>10s}{'best s':>10s}")
    for key, name in (("api", "cnnlens.explain (the map only)"), ("store", "Store.explain (computed and stored)"),
                      ("app", "through the app (computed, seen)"),
                      ("behind", "  then stored behind (waited for after)")):  # fmt: skip
        print(f"{name:44s}{med[key]:10.3f}{min(times[key]):10.3f}")
    pairs = sorted(a / b for a, b in zip(times["app"], times["api"], strict=True))
    print(
        f"app overhead over cnnlens.explain: {med['app'] / med['api'] - 1:+.1%} median against median, "
        f"{min(times['app']) / min(times['api']) - 1:+.1%} best against best, {pairs[len(pairs) // 2] - 1:+.1%} "
        f"median of the {repeats} interleaved pairs (goal <= +10%); storing (Store.explain over "
        f"cnnlens.explain, {med['store'] / med['api'] - 1:+.1%}) is done behind, off the app's request path"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 repeats")
    p.add_argument("--repeats", type=int, default=None, help="pages and photos timed (default 7, --quick 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steady on a shared machine)")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="cnnlens-bench-app-"))
    try:
        first_paint(repeats, folder)
        on_demand(repeats, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
