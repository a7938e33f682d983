"""One-logit (binary) models (issue 26, case 2; the convention of issue 29): the two classes are the logit and its
negation. Class 1 is explained through z, class 0 through -z; probabilities are [sigmoid(-z), sigmoid(z)] (never a
softmax over one logit, which is 1 everywhere); the predicted class is 1 when z > 0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens import quality as q
from cnnlens.evaluation import evaluate
from cnnlens.models import Classifier, Preprocessing

T = torch.Tensor


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1),
    )  # fmt: skip
    with torch.no_grad():
        net[-1].bias.fill_(-float(net[:-1](_x()).matmul(net[-1].weight.T).mean()))  # logits of both signs
    return net.eval()


def _x() -> T:
    return torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return _net()


@pytest.fixture(scope="module")
def x() -> T:
    return _x()


def test_the_toy_has_logits_of_both_signs(net, x) -> None:
    z = net(x)[:, 0]
    assert (z > 0).any() and (z < 0).any()


LINEAR_IN_THE_SCORE = [
    ("saliency", {"abs": False}),
    ("integrated_gradients", {"steps": 8}),
    ("deeplift", {}),
    ("input_x_gradient", {}),
    ("layer_grad_cam", {"layer": "2", "relu": False}),  # Grad-CAM's map before its ReLU
    ("occlusion", {"window": 4, "stride": 4}),
    ("cam", {}),
]


@pytest.mark.parametrize(("method", "options"), LINEAR_IN_THE_SCORE, ids=[m for m, _ in LINEAR_IN_THE_SCORE])
def test_class_0_is_explained_through_the_negated_logit(net, x, method, options) -> None:
    """Each of these methods is linear in the explained score, so the maps of the two classes are exact
    negatives, and class 1's map is the map of the logit itself (a callable target z -> z)."""
    one = cnnlens.explain(net, x, method, target=1, progress=False, **options)
    zero = cnnlens.explain(net, x, method, target=0, progress=False, **options)
    assert one.attributions.abs().amax() > 0
    torch.testing.assert_close(zero.attributions, -one.attributions, rtol=1e-5, atol=1e-7)
    if method != "cam":  # CAM takes class indices only
        logit = cnnlens.explain(net, x, method, target=lambda z: z[:, 0], progress=False, **options)
        torch.testing.assert_close(one.attributions, logit.attributions, rtol=1e-5, atol=1e-7)
    assert one.target.tolist() == [1] * 4 and zero.target.tolist() == [0] * 4


def test_grad_cam_explains_the_predicted_class_of_each_image(net, x) -> None:
    """The default target is the predicted class: 1 where z > 0, else 0 (its map is Grad-CAM of -z)."""
    z = net(x)[:, 0].detach()
    e = cnnlens.explain(net, x, "layer_grad_cam", layer="2", relu=False, progress=False)
    assert e.target.tolist() == (z > 0).long().tolist()
    one = cnnlens.explain(net, x, "layer_grad_cam", layer="2", relu=False, target=1, progress=False).attributions
    sign = torch.where(z > 0, 1.0, -1.0).view(-1, 1, 1, 1)
    torch.testing.assert_close(e.attributions, sign * one, rtol=1e-5, atol=1e-7)


def test_probabilities_are_the_sigmoid_pair_and_sum_to_one(net, x) -> None:
    z = net(x)[:, 0].detach()
    e = cnnlens.explain(net, x, "saliency", progress=False)
    assert e.probabilities.shape == (4, 2) and e.logits.shape == (4, 1)
    torch.testing.assert_close(e.probabilities, torch.stack([torch.sigmoid(-z), torch.sigmoid(z)], 1))
    torch.testing.assert_close(e.probabilities.sum(1), torch.ones(4))
    assert e.predictions.tolist() == (z > 0).long().tolist()


@pytest.mark.parametrize("target", [2, -1, [0, 1, 2, 1]])
def test_targets_out_of_range_are_refused_with_the_two_classes(net, x, target) -> None:
    with pytest.raises(cnnlens.CnnlensError, match=r"one logit z, so two classes: 0 \(explained through -z\)"):
        cnnlens.explain(net, x, "saliency", target=target, progress=False)


# ---- quality curves: a hand-computed toy --------------------------------------------------------------------------
# z = sum(W * x) - 3 on one 2x2 channel: contributions W * x = [1, -2, 1.5, 8], z = 5.5. The map is the
# contributions, so deletion removes 8, 1.5, 1, -2 in turn (baseline 0) and insertion adds them in that order.
W = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
TOY_X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
DELETION_LOGITS = torch.tensor([5.5, -2.5, -4.0, -5.0, -3.0], dtype=torch.float64)
INSERTION_LOGITS = torch.tensor([-3.0, 5.0, 6.5, 7.5, 5.5], dtype=torch.float64)


class _Linear(nn.Module):
    def forward(self, x: T) -> T:
        return (x * W).sum((1, 2, 3))[:, None] - 3.0


def _contributions(model: nn.Module, inputs: T, target: T) -> T:
    return inputs * W


@pytest.mark.parametrize(("metric", "logits"), [("deletion", DELETION_LOGITS), ("insertion", INSERTION_LOGITS)])
@pytest.mark.parametrize("target", [1, 0])
def test_deletion_and_insertion_score_the_sigmoid_of_the_signed_logit(metric, logits, target) -> None:
    opts = {"target": target, "steps": 4, "baseline": 0.0, "progress": False}
    s = q.score(metric, _Linear(), TOY_X, _contributions, **opts)
    signed = logits if target == 1 else -logits
    expected = torch.sigmoid(signed)
    torch.testing.assert_close(s.curve[0], expected, rtol=0, atol=1e-6)  # the model runs in float32
    assert s.curve[0].std() > 0.1  # not the flat 1.0 of a softmax over one logit
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    assert s.values[0].item() == pytest.approx(float(torch.trapezoid(expected, x)), abs=1e-6)
    logit = q.score(metric, _Linear(), TOY_X, _contributions, output="logit", **opts)
    torch.testing.assert_close(logit.curve[0], signed, rtol=0, atol=1e-6)


def test_road_scores_the_sigmoid_of_the_signed_logit(net, x) -> None:
    opts = {"steps": 4, "noise": 0.0, "progress": False}
    prob = q.score("road", net, x[:2], "saliency", target=1, **opts)
    logit = q.score("road", net, x[:2], "saliency", target=1, output="logit", **opts)
    negated = q.score("road", net, x[:2], "saliency", target=0, output="logit", **opts)
    for order in ("morf", "lerf"):
        torch.testing.assert_close(prob.info[order], torch.sigmoid(logit.info[order]))
        assert (prob.info[order].std(1) > 0).all()
    torch.testing.assert_close(negated.info["morf"], -logit.info["morf"])  # saliency(abs) ranks alike for -z
    assert (prob.values != 0).all()


def test_class_discrimination_compares_the_two_classes(net, x) -> None:
    s = q.score("class_discrimination", net, x, "saliency", target=1, progress=False)
    assert s.info["other_classes"] == [0] * 4


# ---- the classifier and evaluation ---------------------------------------------------------------------------------
def _classifier(names: list[str] | None = None) -> Classifier:
    prep = Preprocessing(input_size=(12, 12), resize=None, mean=(0.5,) * 3, std=(0.5,) * 3)
    return Classifier(_net(), prep, class_names=names)


def test_a_one_logit_classifier_has_two_classes_and_predicts_with_the_sigmoid(x) -> None:
    clf = _classifier()
    assert clf.num_classes == 2
    (first, second) = clf.predict(x[:1].clamp(-1, 1), top_k=2)[0]  # inputs in the range of images
    z = clf.module(x[:1].clamp(-1, 1))[0, 0].item()
    p1 = float(torch.sigmoid(torch.tensor(z)))
    assert {first[0]: first[2], second[0]: second[2]} == pytest.approx({1: p1, 0: 1 - p1}, abs=1e-6)
    with pytest.raises(cnnlens.CnnlensError, match="one logit: two classes"):
        Classifier(_net(), class_names=["cat"]).check_logits(torch.zeros(2, 1))


def test_evaluate_a_one_logit_model(x) -> None:
    net = _net()
    z = net(x)[:, 0].detach().double()
    labels = (z > 0).long().tolist()
    labels[0] = 1 - labels[0]  # one mistake
    ev = evaluate(net, (x, labels), progress=False)
    assert ev.classes == ["negative", "positive"]
    torch.testing.assert_close(
        torch.from_numpy(ev.probabilities), torch.stack([torch.sigmoid(-z), torch.sigmoid(z)], 1)
    )
    assert ev.y_pred.tolist() == (z > 0).long().tolist() and ev.accuracy == pytest.approx(0.75)
    named = evaluate(_classifier(["healthy", "ill"]), (x, labels), progress=False)
    assert named.classes == ["healthy", "ill"]
    with pytest.raises(cnnlens.CnnlensError, match="one logit"):
        evaluate(net, (x, labels), classes=["a", "b", "c"], progress=False)


def test_a_store_of_a_one_logit_model_keeps_the_sigmoid_pair(net, x, tmp_path) -> None:
    from cnnlens.store import open_store

    class Pairs:
        classes = ["negative", "positive"]

        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int):
            return x[i], i % 2

    clf = Classifier(net, None, ["negative", "positive"])
    cnnlens.run(clf, Pairs(), ["saliency"], out=tmp_path / "s", progress=False)
    rows = open_store(tmp_path / "s").images.to_pydict()
    z = net(x)[:, 0].detach().double()
    for i in range(len(x)):
        top, p = rows["top_classes"][i], rows["top_probabilities"][i]
        assert top[0] == int(z[i] > 0) and p[0] == pytest.approx(float(torch.sigmoid(z[i].abs())), rel=1e-6)
        assert sum(p) == pytest.approx(1.0)  # not a softmax over one logit (1.0 everywhere)


def test_sglrp_on_one_logit_starts_from_the_sigmoid_pairs_gradient(net, x) -> None:
    """A one-logit model's SGLRP is LRP scaled by dp_t/dz = ±sigmoid(z) sigmoid(-z) (the map is linear in its start),
    not the zero map of a softmax over one logit."""
    for target in (0, 1):
        s = cnnlens.explain(net, x, "sglrp", target=target, composite="epsilon", progress=False).attributions
        lrp = cnnlens.explain(net, x, "lrp", target=1, composite="epsilon", progress=False).attributions
        z = net(x)[:, 0].detach()
        scale = (2 * target - 1) * torch.sigmoid(z) * torch.sigmoid(-z) / z  # lrp(target=1) starts from z
        torch.testing.assert_close(s, lrp * scale.view(-1, 1, 1, 1), rtol=1e-4, atol=1e-7)
        assert bool(s.abs().amax() > 0)
