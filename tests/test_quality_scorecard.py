"""The scorecard: its numbers are the single score() calls', files round-trip, best() honours the direction."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import cnnlens
import cnnlens.quality as q
from _nets import inputs, residual_cnn
from cnnlens.quality._scorecard import COST, DEFAULT_METRICS
from test_contract import _assert_unchanged, _snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ["saliency", "grad_cam"]
MINE = ["randomization_check", "class_discrimination", "detail"]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return residual_cnn()


@pytest.fixture(scope="module")
def xs() -> torch.Tensor:
    return inputs(3, h=16, w=16)


@pytest.fixture(scope="module")
def card(net: torch.nn.Module, xs: torch.Tensor) -> q.Scorecard:
    return q.scorecard(net, xs, METHODS, metrics=MINE, progress=False)


def test_table_values_are_the_single_score_means(card: q.Scorecard, net: torch.nn.Module, xs: torch.Tensor) -> None:
    assert card.methods == METHODS and card.columns == [*MINE, *COST]
    for method in METHODS:
        row = card.rows[card.methods.index(method)]
        assert row["method"] == method
        for metric in MINE:
            s = q.score(metric, net, xs, method)
            assert row[metric] == s.mean
            assert card.per_image[(method, metric)] == s.values.tolist()
            assert card.value(method, metric) == s.mean
        e = cnnlens.explain(net, xs, method)
        assert row["passes_per_image"] == e.passes / 3
        assert card.per_image[(method, "passes_per_image")] == [e.passes / 3] * 3
        assert row["seconds_per_image"] > 0 and row["setup_seconds"] >= 0
    assert card.higher_is_better == {
        "randomization_check": False, "class_discrimination": False, "detail": None,
        "passes_per_image": False, "seconds_per_image": False, "setup_seconds": False,
    }  # fmt: skip
    assert card.scores[("grad_cam", "detail")].metric == "detail"


def test_csv_round_trip_and_json(card: q.Scorecard, tmp_path) -> None:
    path = tmp_path / "card.csv"
    card.to_csv(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == METHODS
    assert [{k: (v if k == "method" else float(v)) for k, v in r.items()} for r in rows] == card.rows
    d = json.loads(json.dumps(card.to_dict(), allow_nan=False))
    assert d["rows"] == card.rows and d["columns"] == card.columns
    assert d["per_image"]["grad_cam"]["detail"] == card.per_image[("grad_cam", "detail")]


def test_best_honours_the_direction(card: q.Scorecard) -> None:
    decided = 0
    for column in card.columns:
        means = {r["method"]: r[column] for r in card.rows}
        if card.higher_is_better[column] is None:
            with pytest.raises(cnnlens.CnnlensError, match="descriptive"):
                card.best(column)
            continue
        pick = max if card.higher_is_better[column] else min
        assert means[card.best(column)] == pick(means.values()), column
        decided += means["saliency"] != means["grad_cam"]  # a column where the direction decides
    assert decided >= 3
    with pytest.raises(cnnlens.CnnlensError, match="no column"):
        card.best("nope")


def test_text_and_markdown_tables(card: q.Scorecard) -> None:
    md = card.to_markdown().splitlines()
    assert len(md) == 2 + len(METHODS)
    assert md[0] == "| method | randomization_check ↓ | class_discrimination ↓ | detail | passes_per_image ↓ | " \
        "seconds_per_image ↓ | setup_seconds ↓ |"  # fmt: skip
    best = card.best("class_discrimination")
    cell = format(card.value(best, "class_discrimination"), ".3g")
    assert f"| **{cell}** |" in md[2 + METHODS.index(best)]
    text = str(card).splitlines()
    assert len(text) == 1 + len(METHODS) and len({len(line) for line in text}) == 1  # aligned
    assert format(card.value("saliency", "detail"), ".4g") in text[1]


def test_method_options_labels_and_progress(net: torch.nn.Module, xs: torch.Tensor, capsys) -> None:
    methods = {"ig8": {"method": "integrated_gradients", "steps": 8}, "saliency": {"abs": False}}
    card = q.scorecard(net, xs, methods, metrics=["detail"], progress=True)
    assert "scorecard" in capsys.readouterr().err
    assert card.methods == ["ig8", "saliency"]
    ig = q.score("detail", net, xs, "integrated_gradients", method_options={"steps": 8})
    assert card.value("ig8", "detail") == ig.mean
    e = cnnlens.explain(net, xs, "integrated_gradients", steps=8)
    assert card.value("ig8", "passes_per_image") == e.passes / 3
    assert (
        card.value("saliency", "detail") == q.score("detail", net, xs, "saliency", method_options={"abs": False}).mean
    )
    card = q.scorecard(net, xs, ["saliency"], metrics={"detail": {"fraction": 0.5}}, progress=False)
    assert card.value("saliency", "detail") == q.score("detail", net, xs, "saliency", fraction=0.5).mean
    assert card.options == {"detail": {"fraction": 0.5}}


def test_a_metric_that_does_not_apply_leaves_nan_and_a_note(xs: torch.Tensor) -> None:
    # no parameters: nothing to randomize (a one-logit model now has two classes, so class_discrimination applies)
    plain = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Softplus())
    metrics = {"randomization_check": {"steps": 1}, "detail": {}}
    card = q.scorecard(plain, xs, ["saliency"], metrics=metrics, progress=False)
    assert math.isnan(card.value("saliency", "randomization_check"))
    assert card.value("saliency", "detail") > 0
    assert len(card.notes) == 1 and "randomization_check of saliency" in card.notes[0]
    assert "n/a" in card.to_markdown() and card.to_dict()["rows"][0]["randomization_check"] is None
    with pytest.raises(cnnlens.CnnlensError, match="no method has a value"):
        card.best("randomization_check")
    card = q.scorecard(plain, xs[:1], ["feature_permutation", "saliency"], metrics=["detail"], progress=False)
    assert math.isnan(card.value("feature_permutation", "detail"))
    assert math.isnan(card.value("feature_permutation", "passes_per_image"))
    assert card.best("passes_per_image") == "saliency"
    assert len(card.notes) == 1 and card.notes[0].startswith("feature_permutation: ")


def test_bad_names_and_options_raise_before_any_work(net: torch.nn.Module, xs: torch.Tensor) -> None:
    before = _snapshot(net)
    bad = [
        ({"methods": ["salency"]}, "unknown method 'salency'.*saliency"),
        ({"methods": []}, "empty"),
        ({"methods": {"saliency": {"steps": 3}}}, "no option 'steps'"),
        ({"methods": ["saliency"], "metrics": ["detial"]}, "unknown metric 'detial'.*detail"),
        ({"methods": ["saliency"], "metrics": {"detail": {"steps": 3}}}, "no option 'steps'"),
        ({"methods": ["saliency"], "metrics": ["seconds_per_image"]}, "always"),
        ({"methods": 3}, "list of method names"),
        ({"methods": ["saliency"], "batch_size": 0}, "batch_size must be"),  # not a NaN row per method
        ({"methods": ["saliency"], "seed": "1"}, "seed must be an int"),
        ({"methods": ["saliency"], "method_options": ["abs"]}, "method_options must be a dict"),
        ({"methods": ["saliency"], "metrics": {"detail": {"absolute": "no"}}}, "absolute must be True or False"),
        ({"methods": ["saliency"], "metrics": {"detail": ["absolute"]}}, "options of metric 'detail' must be a dict"),
    ]
    for kwargs, message in bad:
        with pytest.raises(cnnlens.CnnlensError, match=message):
            q.scorecard(net, xs, progress=False, **kwargs)
    net.train()
    q.scorecard(net, xs, METHODS, metrics=["randomization_check"], progress=False)
    assert all(m.training for m in net.modules())
    net.eval()
    _assert_unchanged(net, before)


def test_default_metrics_are_the_registered_ones(net: torch.nn.Module, xs: torch.Tensor) -> None:
    card = q.scorecard(net, xs[:1], ["saliency"], progress=False)
    registered = {m.name for m in q.metrics()}
    assert card.columns == [*(m for m in DEFAULT_METRICS if m in registered), *COST]
    assert set(MINE) <= set(card.columns) and not card.notes
    for metric, opts in card.options.items():
        assert card.scores[("saliency", metric)].options == {**q.get_metric(metric).defaults(), **opts}
