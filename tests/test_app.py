"""The local web app over HTTP (a real server on a free port): every number a page shows is the store's, pictures
are the report's own views of the stored maps, and it is safe by default (only its own host, no path out of its
files, everything escaped, JSON-only computations, one at a time, cancellable, limited, error pages without a
traceback)."""

from __future__ import annotations

import http.client
import io
import json
import re
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlens
from _app_store import digits_store, many_classes_store, named_store, store_copy
from _digits_session import trained_digits
from cnnlens.app import create_app, running
from cnnlens.store import open_store

pytestmark = pytest.mark.usefixtures("one_thread")


class Client:
    """Raw HTTP requests (paths sent as written: no client-side normalisation of ``..``)."""

    def __init__(self, base: str) -> None:
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def get(self, path: str, **headers: str):
        return self.request("GET", path, headers=headers)

    def post(self, path: str, value: object, **headers: str):
        headers = {"Content-Type": "application/json", **headers}
        return self.request("POST", path, json.dumps(value).encode(), headers)

    def text(self, path: str) -> str:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return body.decode()

    def wait(self, timeout: float = 120.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = json.loads(self.get("/api/job")[2])["job"]
            if job["state"] != "running" and job.get("stored") != "storing":  # computed, and stored behind
                return job
            time.sleep(0.05)
        raise AssertionError("the computation did not end")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = store_copy(tmp_path_factory.mktemp("app"))
    # one input per model pass: a long computation is long enough to be cancelled before it ends
    with running(root, model=trained_digits(), max_passes=1000, batch_size=1) as base:
        yield Client(base), root


class Cells(HTMLParser):
    """The confusion matrix cells (data-true, data-pred, count) and elements' data-value by id."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[int, int], int] = {}
        self.values: dict[str, str] = {}
        self._cell: tuple[int, int] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if "data-true" in a:
            self._cell = (int(a["data-true"]), int(a["data-pred"]))
        if "id" in a and "data-value" in a:
            self.values[a["id"]] = a["data-value"]

    def handle_data(self, data) -> None:
        if self._cell is not None and data.strip():
            self.cells[self._cell] = int(data)
            self._cell = None


def _truth(root: Path):
    t = open_store(root).images.to_pydict()
    return np.array(t["label"]), np.array(t["predicted"]), t


def test_overview_numbers_are_the_stores(served) -> None:
    client, root = served
    y, p, _ = _truth(root)
    page = Cells()
    page.feed(client.text("/"))
    assert float(page.values["accuracy"]) == pytest.approx(np.mean(y == p), abs=1e-12)
    assert float(page.values["nir"]) == pytest.approx(np.bincount(y).max() / len(y), abs=1e-12)
    counts = {(int(a), int(b)): 0 for a, b in zip(y, p, strict=True)}
    for a, b in zip(y, p, strict=True):
        counts[(int(a), int(b))] += 1
    assert page.cells == counts  # every non-empty cell, with its count, links its images


def test_grid_filters_sort_and_pages_are_the_stores(served) -> None:
    client, root = served
    y, p, t = _truth(root)
    conf = np.array([v[0] for v in t["top_probabilities"]])
    cases = [
        ("true=3&pred=9", (y == 3) & (p == 9)),
        ("correct=no", y != p),
        ("pred=0&correct=yes&min=0.5", (p == 0) & (y == 0) & (conf >= 0.5)),
        ("min=0.2&max=0.4", (conf >= 0.2) & (conf <= 0.4)),
    ]
    for query, mask in cases:
        html = client.text(f"/images?{query}")
        assert int(re.search(r'data-count="(\d+)"', html).group(1)) == int(mask.sum()), query
    shown: list[str] = []
    for page in (1, 2, 3, 4, 5, 6, 7, 8):
        html = client.text(f"/images?sort=-confidence&page={page}")
        shown += [urllib.parse.unquote(i) for i in re.findall(r'class="card[^"]*" href="/image\?id=([^"]+)"', html)]
    order = np.argsort(conf, kind="stable")
    assert shown == [t["id"][i] for i in order]  # every image once, lowest confidence first, over 8 pages
    # sorted by a quality score: best (lowest deletion) first, as the store holds them
    ids, values = open_store(root).scores("grad_cam", "deletion")
    html = client.text("/images?sort=grad_cam:deletion")
    first = [urllib.parse.unquote(i) for i in re.findall(r'href="/image\?id=([^"]+)"', html)][:5]
    assert first == [ids[i] for i in np.argsort(values, kind="stable")[:5]]


def test_a_map_picture_is_the_reports_view_of_the_stored_map(served) -> None:
    from PIL import Image

    from cnnlens.viz import render

    client, root = served
    store = open_store(root)
    image_id = store.ids[7]
    pixels = store.dataset()[store.row(image_id)["position"]][0]
    pixels = trained_digits().preprocessing.to_pixels(trained_digits().preprocess([pixels]))[0]
    for method, look in [("grad_cam", ("blended_heat_map", "all", "RdBu_r", 0.7)),
                         ("saliency", ("masked_image", "positive", "auto", 0.5))]:  # fmt: skip
        view, sign, cmap, alpha = look
        query = urllib.parse.urlencode({"id": image_id, "method": method, "view": view, "sign": sign, "cmap": cmap,
                                        "alpha": alpha})  # fmt: skip
        status, headers, body = client.get(f"/map.png?{query}")
        assert status == 200 and headers["content-type"] == "image/png"
        shown = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)
        truth = render(view, pixels, store.map(image_id, method), sign=sign, cmap=None if cmap == "auto" else cmap,
                       alpha=alpha)  # fmt: skip
        assert np.abs(shown - np.round(truth * 255)).max() <= 1
    html = client.text(f"/image?id={urllib.parse.quote(image_id)}")
    row = store.row(image_id)
    shown_p = [float(v) for v in re.findall(r'data-p="([^"]+)"', html)]
    assert shown_p == row["top_probabilities"]


def test_paths_out_of_the_apps_files_are_refused(served) -> None:
    client, root = served
    secret = (root / "manifest.json").read_bytes()
    for path in [
        "/static/../manifest.json", "/static/%2e%2e/manifest.json", "/static/..%2fmanifest.json",
        "/static/%2e%2e%2f%2e%2e%2fstore/manifest.json", "/static//etc/passwd", "/../manifest.json",
        "/manifest.json", "/photo.png?id=../manifest.json", "/photo.png?id=%2Fetc%2Fpasswd",
        "/map.png?id=digits/field/4&method=../../manifest.json", "/static/app.css/../../_server.py",
    ]:  # fmt: skip
        status, _, body = client.get(path)
        assert status in (400, 404), path
        assert b"fingerprint" not in body and b"root:" not in body and b"import" not in body, path
    assert secret  # the file is there: the refusals above are not for want of it
    assert client.get("/static/app.css")[0] == 200


def test_computations_come_as_json_from_this_app_only(served) -> None:
    client, _ = served
    asked = {"id": "digits/field/4", "method": "saliency"}
    assert client.get("/", Host="attacker.example")[0] == 421  # DNS rebinding: another host name
    assert (
        client.request("POST", "/api/explain", b"id=x", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    )
    assert client.post("/api/explain", asked, Origin="http://attacker.example")[0] == 403
    big = {"id": "digits/field/4", "method": "saliency", "options": {"x": "y" * 70_000}}
    assert client.post("/api/explain", big)[0] == 413
    status, headers, _ = client.get("/")
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"


def test_one_computation_at_a_time_cancellable_and_limited(served) -> None:
    client, root = served
    image = open_store(root).ids[11]
    long = {"steps": "950", "quadrature": "riemann_middle"}
    status, _, body = client.post("/api/explain", {"id": image, "method": "integrated_gradients",
                                                   "options": {**long, "batch_size": "1"}})  # fmt: skip
    assert status == 400 and b"has no option 'batch_size'" in body  # the registry checks every option
    status, _, body = client.post("/api/explain", {"id": image, "method": "integrated_gradients", "options": long})
    assert status == 202, body
    status, _, body = client.post("/api/explain", {"id": image, "method": "guided_backprop"})
    assert status == 409 and b"another computation is running" in body
    assert json.loads(client.post("/api/cancel", {})[2])["job"]["state"] == "running"
    job = client.wait()
    assert job["state"] == "cancelled" and "integrated_gradients" not in open_store(root).labels
    status, _, body = client.post("/api/explain", {"id": image, "method": "integrated_gradients",
                                                   "options": {"steps": "1500"}})  # fmt: skip
    assert status == 400 and b"over the app's size limit of 1,000 model passes" in body
    status, _, body = client.post(
        "/api/explain",
        {
            "id": image,
            "method": "integrated_gradients",
            "options": {**long, "smooth": "smoothgrad", "smooth_samples": "2"},
        },
    )
    assert status == 202, body  # two noisy copies of 950 path points: 1,900 passes
    job = client.wait()
    assert job["state"] == "stopped" and "more than 1,000 model passes" in job["message"]
    assert 1000 < job["passes"] <= 1001 and "integrated_gradients" not in open_store(root).labels
    status, _, body = client.post("/api/explain", {"id": image, "method": "input_x_gradient", "explains": "3"})
    assert status == 202 and client.wait()["state"] == "done"
    e = open_store(root).explanation(image, "input_x_gradient", 3)
    assert e["target"] == 3
    status, _, body = client.post("/api/explain", {"id": image, "method": "input_x_gradient", "explains": "3"})
    assert status == 200 and json.loads(body)["stored"] == "input_x_gradient"  # stored: shown, not computed again


def test_error_pages_say_what_is_wrong_without_a_traceback(served) -> None:
    client, _ = served
    for path, status, phrase in [
        ("/image?id=nope", 404, "no image &#39;nope&#39; in the store"),
        ("/nothing", 404, "no page"),
        ("/images?true=12", 400, "true must be a whole number in 0..9"),
        ("/images?sort=best", 400, "sort must be one of"),
        ("/image?id=digits/field/4&explains=other", 400, "explains must be predicted, label or a class index"),
        ("/map.png?id=digits/field/4&method=grad_cam&view=masked_image&sign=all", 400, "uses the map as weights"),
        ("/pair?true=3", 400, "a pair needs true=CLASS and pred=CLASS"),
    ]:
        got, _, body = client.get(path)
        text = body.decode()
        assert got == status and phrase in text, (path, text[:300])
        assert "Traceback" not in text and 'File "' not in text


def test_unexpected_errors_are_one_line_and_logged(served, monkeypatch, caplog) -> None:
    from cnnlens.app import _pages

    client, _ = served
    monkeypatch.setattr(_pages, "grid", lambda *a: 1 / 0)
    status, _, body = client.get("/images")
    assert status == 500 and b"unexpected ZeroDivisionError" in body and b"Traceback" not in body
    assert "ZeroDivisionError" in caplog.text  # the details are in the log


def test_class_names_and_ids_are_escaped(tmp_path) -> None:
    evil = ['<script>alert("c")</script>', '"><img src=x onerror=alert(1)>', *[f"c{i}" for i in range(2, 10)]]
    ids = [f"<b>x{i}</b>'\"&" for i in range(16)]
    _, model, data = named_store(tmp_path, evil, ids, "<i>evil</i>")
    with running(tmp_path / "s", model=model, data=data) as base_url:
        client = Client(base_url)
        pages = [client.text("/"), client.text("/images"), client.text("/image?id=" + urllib.parse.quote(ids[0])),
                 client.text("/pair?true=0&pred=1"), client.get("/image?id=<script>alert(1)</script>")[2].decode()]  # fmt: skip
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>x" not in html
    assert "&lt;script&gt;alert(&#34;c&#34;)&lt;/script&gt;" in pages[0] and "&lt;b&gt;x0&lt;/b&gt;" in pages[2]


def test_many_classes_matrix_shows_the_most_confused(tmp_path) -> None:
    from cnnlens.app._pages import MATRIX_CLASSES, overview

    root, model, data = many_classes_store(tmp_path)
    store = open_store(root)
    o = overview(store)
    y, p = np.array(store.images.column("label").to_pylist()), np.array(store.images.column("predicted").to_pylist())
    present = sorted(set(y) | set(p))
    shown = {c["index"] for c in o["matrix"]["classes"]}
    assert len(shown) == MATRIX_CLASSES < len(present) == o["matrix"]["present"]
    pairs = sorted(((int(a), int(b)) for a, b in zip(y, p, strict=True) if a != b), key=lambda ab: ab)
    counts = {ab: pairs.count(ab) for ab in set(pairs)}
    # every pair more confused than the most confused pair left out of the matrix is in it (both its classes)
    left_out = max(n for (a, b), n in counts.items() if not {a, b} <= shown)
    assert all({a, b} <= shown for (a, b), n in counts.items() if n > left_out) and max(counts.values()) > left_out
    cells = {(r["index"], c["pred"]): c["count"] for r in o["matrix"]["rows"] for c in r["cells"]}
    assert all(cells[ab] == n for ab, n in counts.items() if set(ab) <= shown)
    assert [q["count"] for q in o["pairs"]] == sorted(counts.values(), reverse=True)[: len(o["pairs"])]
    assert all(counts[(q["true"], q["pred"])] == q["count"] for q in o["pairs"])
    assert o["top_k"][0] == 5 and store.manifest["top_k"] == 10  # the top 5 from the kept top 10
    hits = [lab in tc[:5] for lab, tc in zip(y, store.images.column("top_classes").to_pylist(), strict=True)]
    assert o["top_k"][1] == pytest.approx(np.mean(hits))
    with running(root, model=model, data=data) as base_url:
        html = Client(base_url).text("/")
    assert html.count('class="col"') == MATRIX_CLASSES and f"of the {len(present)} present" in html
    assert "classes of the most confused pairs" in html


def test_serving_to_the_network_warns(tmp_path) -> None:
    app = create_app(digits_store(), hosts=None, token="a-token-for-this-test")  # any Host: behind a proxy
    warned = pytest.warns(cnnlens.CnnlensWarning, match="anyone who can reach this machine")
    with warned, running(digits_store(), host="0.0.0.0", app=app) as url:
        client = Client(url.replace("0.0.0.0", "127.0.0.1"))
        assert client.get("/?token=a-token-for-this-test", Host="example.org")[0] == 200
        assert client.get("/", Host="example.org")[0] == 403  # no token


def test_cli_view_data_predicts_into_a_new_store_while_serving_and_stops_on_ctrl_c(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "view"
    code = "import sys; from cnnlens.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "view", "--data", "digits:field", "--model", "digits_cnn",
            "--out", str(out), "--port", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert "at http://127.0.0.1:" in line, child.stderr.read() if child.poll() is not None else line
        client = Client(line.split(" at ", 1)[1].split()[0])
        job = json.loads(client.get("/api/job?wait=30")[2])["job"]
        assert job["title"] == "predicting 360 images" and job["state"] == "done" and job["passes"] == 360
        page = Cells()
        page.feed(client.text("/"))
        y, p, _ = _truth(out)
        assert len(y) == 360 and float(page.values["accuracy"]) == pytest.approx(np.mean(y == p), abs=1e-12)
        status, _, _ = client.post("/api/explain", {"id": "digits/field/4", "method": "saliency"})
        assert status == 202 and client.wait()["state"] == "done"  # explained as the page asks
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    store = open_store(out)
    assert store.complete and store.labels == ["saliency"] and store.has("digits/field/4", "saliency")
    assert store.manifest["dataset"]["spec"] == "digits:field" and store.manifest["model"]["source"] == "digits_cnn"


def test_cli_view_usage_errors_name_the_fix(tmp_path, capsys) -> None:
    import socket

    from cnnlens.cli import main

    assert main(["view"]) == 2
    assert "give a STORE (made by cnnlens run), or --data DATA" in capsys.readouterr().err
    assert main(["view", str(tmp_path)]) == 2
    assert "is not a cnnlens store (no manifest.json); make one with cnnlens run" in capsys.readouterr().err
    assert main(["view", str(digits_store()), "--out", str(tmp_path / "x")]) == 2
    assert "--out names the store that --data creates" in capsys.readouterr().err
    assert main(["view", str(digits_store()), "--model", "efficientnet_lite0"]) == 2
    err = capsys.readouterr().err
    assert "--model efficientnet_lite0 is not the model the store" in err and "(digits_cnn, its weights differ)" in err
    assert "leave --model out to use the store's own model" in err
    from cnnlens.cli import build_parser
    from cnnlens.cli._view import _given_model

    args = build_parser().parse_args(["view", str(digits_store())])  # the advice applied: --model left out
    assert not _given_model(args)  # so the app uses the store's own model, which loads:
    assert open_store(digits_store()).model().module(torch.zeros(1, 3, 8, 8)).shape == (1, 10)
    assert main(["view", "--help"]) == 0
    assert "with a STORE: the store's own model" in " ".join(capsys.readouterr().out.split())
    assert main(["view", "--data", "digits:field"]) == 2
    assert "Pass --model digits_cnn" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["view", str(digits_store()), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "choose another --port (0: any free port)" in err


def test_layer_methods_are_not_scored_and_every_score_says_which_way_is_better(served) -> None:
    from cnnlens.quality import get_metric

    client, root = served
    store = open_store(root)
    image = store.ids[5]
    page = client.text(f"/image?id={urllib.parse.quote(image)}")
    methods = {m["name"]: m for m in json.loads(re.search(r'id="methods-data"[^>]*>(.*?)</script>', page, re.S)[1])}
    assert methods["layer_activation"]["scorable"] is False and methods["saliency"]["scorable"] is True
    for metric in store.metrics:  # e.g. "deletion ↓" (lower is better) in the score-it choice and the cards
        mark = {True: "↑", False: "↓", None: ""}[get_metric(metric).higher_is_better]
        assert f"{metric} {mark}" in page
    status, _, body = client.post("/api/explain", {"id": image, "method": "layer_activation", "score": True})
    assert status == 202, body
    job = client.wait()
    assert job["state"] == "done", job  # a layer's map is stored unscored, not failed on the pixel scores
    e = open_store(root).explanation(image, "layer_activation", int(store.row(image)["predicted"]))
    assert all(e[m] is None or np.isnan(e[m]) for m in store.metrics)
