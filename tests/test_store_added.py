"""Explanations added to a store after its run (`Store.explain`): the method's own maps with the image's shard
seed, each (image, method, class) once, labels that never mix options, the run's lock respected, and kill -9 at any
moment leaving the store as it was (then the same call completes it exactly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlens
from _added_child import ADDITION, ids
from _app_store import METHODS, digits_store, store_copy
from _digits_session import trained_digits
from cnnlens.data import digits
from cnnlens.store import open_store
from cnnlens.store._layout import Lock
from cnnlens.store._settings import shard_seed

pytestmark = pytest.mark.usefixtures("one_thread")
CHILD = Path(__file__).with_name("_added_child.py")


@pytest.fixture(scope="module")
def model() -> cnnlens.Classifier:
    return trained_digits()


def _image(store, image_id: str) -> torch.Tensor:
    return store.dataset()[store.row(image_id)["position"]][0]


def test_added_maps_are_the_methods_own_with_the_shard_seed(model, tmp_path) -> None:
    store = open_store(store_copy(tmp_path))
    picked = [store.ids[3], store.ids[70]]  # shards 0 and 2: each explained with its own seed
    added = store.explain(picked, "saliency", "label", model=model, smooth="smoothgrad", smooth_samples=4,
                          progress=False)  # fmt: skip
    assert added.label == "saliency-2" and added.explained == picked and not added.failed and not added.already
    assert store.labels == [*METHODS, "saliency-2"] and list(store.added) == ["saliency-2"]
    assert store.method_of("saliency-2")[1]["smooth_samples"] == 4
    for image_id in picked:
        row = store.row(image_id)
        seed = shard_seed(store.manifest["seed"], row["position"] // store.manifest["shard_size"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # as a run seeds a shard
            truth = cnnlens.explain(model, [_image(store, image_id)], "saliency", target=row["label"], seed=seed,
                                    smooth="smoothgrad", smooth_samples=4).attributions[0].numpy()  # fmt: skip
        got = store.map(image_id, "saliency-2", "label")
        np.testing.assert_allclose(got, truth, rtol=1e-3, atol=1e-3 * float(np.abs(truth).max()))
        e = store.explanation(image_id, "saliency-2", "label")
        kind = "predicted" if row["label"] == row["predicted"] else "label"
        assert (e["target"], e["explains"], e["passes"]) == (row["label"], kind, 5)  # 4 noisy copies, the image
        assert e["deletion"] is not None  # scored with the store's metrics
    # the run's own rows are untouched, and a reader opened now sees the same
    again = open_store(store.root)
    assert again.explanations.equals(store.explanations) and again.labels == store.labels


def test_each_image_method_and_class_once_and_labels_never_mix_options(model, tmp_path) -> None:
    store = open_store(store_copy(tmp_path))
    before = store.explanations.num_rows
    wrong = next(i for i in store.ids if store.row(i)["label"] != store.row(i)["predicted"])
    row = store.row(wrong)
    other = next(c for c in range(10) if c not in (row["label"], row["predicted"]))
    # a run method, same options: its own label; another class is stored as class-K beside its maps
    added = store.explain([wrong, wrong], "grad_cam", other, model=model, score=False, progress=False)
    assert (added.label, added.explained) == ("grad_cam", [wrong])
    e = store.explanation(wrong, "grad_cam", other)
    assert (e["explains"], e["target"], e["deletion"]) == (f"class-{other}", other, None)
    assert "not scored" in " ".join(e["notes"]) and store.map(wrong, "grad_cam", other).shape == (1, 8, 8)
    truth = cnnlens.explain(model, [_image(store, wrong)], "grad_cam", target=other).attributions[0]
    np.testing.assert_allclose(store.map(wrong, "grad_cam", other, size="input"), truth, atol=2e-3 * float(truth.max()))
    # asked again (also as the predicted class, which the run stored): nothing is computed
    again = store.explain([wrong], "grad_cam", other, model=model, progress=False)
    assert again.already == [wrong] and again.explained == [] and again.passes == 0
    assert store.explain([wrong], "grad_cam", row["predicted"], model=model, progress=False).already == [wrong]
    assert store.explanations.num_rows == before + 1 and store.labels == METHODS
    # other options: another label; a label of other options is refused; so is a label that is no file name
    assert store.explain([wrong], "grad_cam", layer="features.0", model=model, progress=False).label == "grad_cam-2"
    with pytest.raises(cnnlens.CnnlensError, match="holds 'saliency' already as saliency with other options"):
        store.explain([wrong], "saliency", label="saliency", abs=False, model=model, progress=False)
    with pytest.raises(cnnlens.CnnlensError, match="a method label must be"):
        store.explain([wrong], "saliency", label="../x", model=model, progress=False)


@pytest.mark.parametrize(
    ("ids_", "explains", "options", "phrase"),
    [
        (["digits/field/nope"], "predicted", {}, "no image 'digits/field/nope' in the store"),
        (["digits/field/4"], 10, {}, r"class 10 out of range: the store's model has classes 0..9"),
        (["digits/field/4"], "second", {}, "explains must be 'predicted', 'label' or a class index"),
        (["digits/field/4"], "predicted", {"steps": 0}, "option steps must be an int >= 1"),
        ([], "predicted", {}, "no images to explain"),
    ],
)
def test_bad_requests_say_what_is_wrong(ids_, explains, options, phrase: str) -> None:
    store = open_store(digits_store())
    with pytest.raises(cnnlens.CnnlensError, match=phrase):
        store.explain(ids_, "integrated_gradients", explains, progress=False, **options)


def test_a_run_writing_the_store_refuses_an_addition(model, tmp_path) -> None:
    store = open_store(store_copy(tmp_path))
    lock = Lock(store.root)
    lock.acquire()  # as `cnnlens run` holds it
    try:
        with pytest.raises(cnnlens.CnnlensError, match="a run is writing to the store .*; add explanations once"):
            store.explain(store.ids[:2], "input_x_gradient", model=model, progress=False)
    finally:
        lock.release()
    assert "input_x_gradient" not in open_store(store.root).labels
    assert store.explain(store.ids[:2], "input_x_gradient", model=model, progress=False).explained == store.ids[:2]


def test_a_store_of_predictions_only_is_explained_on_demand(model, tmp_path) -> None:
    summary = cnnlens.run(model, "digits:test", [], out=tmp_path / "s", progress=False)
    store = open_store(tmp_path / "s")
    assert summary.computed == len(digits("test")) and store.methods == [] and store.explanations.num_rows == 0
    probs = torch.softmax(model.module(model.preprocess(list(digits("test").images[:5]))).double(), 1)
    assert store.images.column("predicted").to_pylist()[:5] == probs.argmax(1).tolist()
    assert store.explain(store.ids[:3], "saliency", model=model, progress=False).explained == store.ids[:3]
    assert store.labels == ["saliency"] and store.explanations.num_rows == 3
    with pytest.raises(cnnlens.CnnlensError, match="metrics score the methods' explanations"):
        cnnlens.run(model, "digits:test", [], metrics=["deletion"], out=tmp_path / "t", progress=False)


def _kill(moment: str, root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(CHILD), moment, str(root)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_while_adding_the_store_is_as_it_was_then_the_same_call_completes_it(model, tmp_path) -> None:
    reference = open_store(store_copy(tmp_path / "reference"))
    options = {k: v for k, v in ADDITION.items() if k not in ("method", "explains")}
    added = reference.explain(ids(reference), ADDITION["method"], ADDITION["explains"], model=model, progress=False,
                              **options)  # fmt: skip
    assert len(added.explained) == len(ids(reference))
    children = {m: (tmp_path / m, _kill(m, store_copy(tmp_path / m))) for m in ("maps", "rows")}
    original = open_store(digits_store())
    for moment, (root, child) in children.items():
        _, err = child.communicate(timeout=300)
        assert child.returncode == -9, f"{moment}: {err.decode()[-2000:]}"
        killed = open_store(root / "store")
        assert killed.labels == METHODS and killed.explanations.equals(original.explanations), moment
        leftovers = [p for p in (root / "store").rglob("*") if p.name.endswith(".partial") or ".cnnlens-tmp-" in p.name]
        assert leftovers, moment  # the kill left half a file, which no reader takes for a result
        again = killed.explain(ids(killed), ADDITION["method"], ADDITION["explains"], model=model, progress=False,
                               **options)  # fmt: skip
        assert again.explained == added.explained and not [
            p for p in (root / "store").rglob("*") if p.name.endswith(".partial") or ".cnnlens-tmp-" in p.name
        ]
        columns = [c for c in reference.explanations.column_names if c != "seconds"]
        assert killed.explanations.select(columns).equals(reference.explanations.select(columns)), moment
        for image_id in ids(killed):
            np.testing.assert_array_equal(killed.map(image_id, "occlusion", "label"),
                                          reference.map(image_id, "occlusion", "label"))  # fmt: skip
