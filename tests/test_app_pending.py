"""On-demand explanations in the app are shown at once from memory and stored behind by one writer: the page shows
the result before the store holds it, the store then holds exactly what `Store.explain` stores, asking again while
it waits computes nothing, shutting the app down stores what waits, and a failing write is said (job line, log)
while the app keeps serving and computes the result again when asked."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import cnnlens.store._added as added_module
from _app_store import store_copy
from _digits_session import trained_digits
from cnnlens.app import create_app, running
from cnnlens.store import open_store
from cnnlens.store._kinds import added_parts
from test_app import Client

pytestmark = pytest.mark.usefixtures("one_thread")
METHOD = "input_x_gradient"


def _app(root):
    app = create_app(root, model=trained_digits())
    return app, app.app.state.cnnlens


def _held(monkeypatch) -> threading.Event:
    """Writes wait for the returned event."""
    release, real = threading.Event(), added_module.write_more

    def held(*args, **kwargs):
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(added_module, "write_more", held)
    return release


def _computed(client: Client) -> dict:
    """The current job once computed (not waiting for its write)."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        job = json.loads(client.get("/api/job")[2])["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.02)
    raise AssertionError("the computation did not end")


def test_shown_before_it_is_stored_then_stored_as_store_explain_stores_it(tmp_path, monkeypatch) -> None:
    root = store_copy(tmp_path / "app")
    reference = open_store(store_copy(tmp_path / "api"))
    image = reference.ids[7]
    release = _held(monkeypatch)
    app, state = _app(root)
    with running(root, app=app) as base:
        client = Client(base)
        status, _, body = client.post("/api/explain", {"id": image, "method": METHOD})
        assert status == 202, body
        job = _computed(client)
        assert job["state"] == "done" and job["stored"] == "storing"
        assert METHOD not in open_store(root).labels  # not on disk yet ...
        page = client.text(f"/image?id={image}")
        assert f'data-label="{METHOD}"' in page  # ... but shown
        status, _, early = client.get(f"/map.png?id={image}&method={METHOD}")
        assert status == 200 and early[:8] == b"\x89PNG\r\n\x1a\n"
        status, _, body = client.post("/api/explain", {"id": image, "method": METHOD})
        assert status == 200 and json.loads(body)["stored"] == METHOD  # shown already: not computed again
        release.set()
        assert state.pending.flush(60)
        assert json.loads(client.get("/api/job")[2])["job"]["stored"] == "stored"
        assert state.pending.snapshot()[0] == []
        status, _, late = client.get(f"/map.png?id={image}&method={METHOD}")
        assert status == 200 and late == early  # the same picture, read from the store now
    monkeypatch.undo()
    reference.explain(image, METHOD, progress=False)
    stored = open_store(root)
    assert METHOD in stored.added and len(added_parts(root / "explanations")) == 1
    assert np.array_equal(stored.map(image, METHOD), reference.map(image, METHOD))
    ours, theirs = stored.explanation(image, METHOD), reference.explanation(image, METHOD)
    for key in ("target", "attribution_sum", "map_scale", "deletion", "explains", "passes", "warnings", "notes"):
        assert ours[key] == theirs[key], key


def test_requests_at_once_compute_once_and_store_once(tmp_path, monkeypatch) -> None:
    root = store_copy(tmp_path)
    image = open_store(root).ids[3]
    release = _held(monkeypatch)
    app, state = _app(root)
    with running(root, app=app) as base:
        client = Client(base)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: client.post("/api/explain", {"id": image, "method": METHOD}), range(4)))
        statuses = sorted(a[0] for a in answers)
        assert statuses.count(202) == 1 and set(statuses) <= {200, 202, 409}, answers
        assert _computed(client)["state"] == "done"
        status, _, body = client.post("/api/explain", {"id": image, "method": METHOD})
        assert status == 200 and json.loads(body)["stored"] == METHOD
        release.set()
        assert state.pending.flush(60)
    t = open_store(root).explanations.to_pydict()
    assert sum(m == METHOD for m in t["method"]) == 1 and len(added_parts(root / "explanations")) == 1


def test_shutting_down_stores_what_waits(tmp_path, monkeypatch) -> None:
    root = store_copy(tmp_path)
    image = open_store(root).ids[5]
    real = added_module.write_more
    monkeypatch.setattr(added_module, "write_more", lambda *a, **k: (time.sleep(1.0), real(*a, **k)))
    app, _ = _app(root)
    with running(root, app=app) as base:
        client = Client(base)
        assert client.post("/api/explain", {"id": image, "method": METHOD})[0] == 202
        job = _computed(client)
        assert job["state"] == "done" and job["stored"] == "storing" and METHOD not in open_store(root).labels
    assert open_store(root).has(image, METHOD)  # leaving the app waited for the write


def test_a_failing_write_is_said_and_logged_and_the_app_keeps_serving(tmp_path, monkeypatch, caplog) -> None:
    root = store_copy(tmp_path)
    image = open_store(root).ids[9]

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(added_module, "write_more", broken)
    app, state = _app(root)
    with running(root, app=app) as base:
        client = Client(base)
        assert client.post("/api/explain", {"id": image, "method": METHOD})[0] == 202
        assert _computed(client)["state"] == "done"
        assert state.pending.flush(60)
        job = json.loads(client.get("/api/job")[2])["job"]
        assert job["stored"].startswith("not stored: OSError: [Errno 28] No space left on device")
        assert "storing input_x_gradient failed" in caplog.text and "No space left" in caplog.text
        assert state.pending.failures and state.pending.snapshot()[0] == []
        assert f'data-label="{METHOD}"' not in client.text(f"/image?id={image}")  # not pretended stored
        client.text("/")  # still serving
        monkeypatch.undo()
        assert client.post("/api/explain", {"id": image, "method": METHOD})[0] == 202  # computed again
        assert _computed(client)["state"] == "done" and state.pending.flush(60)
        assert json.loads(client.get("/api/job")[2])["job"]["stored"] == "stored"
    assert open_store(root).has(image, METHOD)
