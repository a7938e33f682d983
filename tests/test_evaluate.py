"""cnnlens.evaluation: metrics against a hand-made example and scikit-learn, groups, tables, the model left alone."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics
from torch import nn

from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.data import ImageFolder
from cnnlens.evaluation import Evaluation, evaluate
from cnnlens.models import Classifier, Preprocessing

# -- a hand-made 3-class example: 7 samples, 3 errors -------------------------------------------------
Y = np.array([0, 0, 1, 1, 2, 2, 2])
P = np.array(
    [
        [0.70, 0.20, 0.10],  # true 0, predicted 0
        [0.30, 0.60, 0.10],  # true 0, predicted 1
        [0.20, 0.70, 0.10],  # true 1, predicted 1
        [0.10, 0.30, 0.60],  # true 1, predicted 2
        [0.10, 0.10, 0.80],  # true 2, predicted 2
        [0.50, 0.10, 0.40],  # true 2, predicted 0
        [0.20, 0.35, 0.45],  # true 2, predicted 2
    ]
)
NAMES = ["cat", "dog", "fox"]


def _hand() -> Evaluation:
    return Evaluation(Y, P, NAMES, [f"s{i}" for i in range(7)])


def test_hand_made_confusion_matrix_and_per_class_metrics() -> None:
    e = _hand()
    assert e.y_pred.tolist() == [0, 1, 1, 2, 2, 0, 2]
    assert e.confusion_matrix.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 2]]  # rows = true class
    assert e.accuracy == pytest.approx(4 / 7)
    assert e.no_information_rate == pytest.approx(3 / 7)  # always guessing "fox"
    expected = {"cat": (1 / 2, 1 / 2, 2), "dog": (1 / 2, 1 / 2, 2), "fox": (2 / 3, 2 / 3, 3)}
    for name, (precision, recall, support) in expected.items():
        r = e.report[name]
        assert r["precision"] == pytest.approx(precision)
        assert r["recall"] == pytest.approx(recall)
        assert r["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert r["support"] == support
    assert e.averages["macro"]["f1"] == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    assert e.top_k_accuracy(1) == pytest.approx(4 / 7)
    assert e.top_k_accuracy(2) == pytest.approx(1.0)  # every true class is among the two most probable
    assert e.top_k_accuracy(3) == 1.0
    assert Evaluation(Y, P, NAMES).ids == [str(i) for i in range(7)]


def _pairwise_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties count 1/2 (Mann-Whitney)."""
    wins = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(wins / (len(positive) * len(negative)))


def test_hand_made_auc_per_class_micro_and_macro() -> None:
    e = _hand()
    # counted by hand: cat 9 of 10 pairs ordered right, dog 8 of 10, fox 10 of 12
    assert e.roc_auc["cat"] == pytest.approx(0.9)
    assert e.roc_auc["dog"] == pytest.approx(0.8)
    assert e.roc_auc["fox"] == pytest.approx(10 / 12)
    assert e.roc_auc["macro"] == pytest.approx((0.9 + 0.8 + 10 / 12) / 3)
    onehot = np.eye(3)[Y].astype(bool)
    assert e.roc_auc["micro"] == pytest.approx(_pairwise_auc(P[onehot], P[~onehot]))


def test_hand_made_groups() -> None:
    g = _hand().groups
    assert {c: g.true_positives[c].tolist() for c in NAMES} == {"cat": [0], "dog": [2], "fox": [4, 6]}
    assert {c: g.false_negatives[c].tolist() for c in NAMES} == {"cat": [1], "dog": [3], "fox": [5]}
    assert {c: g.false_positives[c].tolist() for c in NAMES} == {"cat": [5], "dog": [1], "fox": [3]}
    assert g.most_confident_errors.tolist() == [1, 3, 5]  # p(predicted) 0.6, 0.6, 0.5
    assert g.confused("fox", "cat").tolist() == [5]
    assert g.confused(0, 1).tolist() == [1]


def _random_case(n: int = 300, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]  # better than chance, far from perfect
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def test_metrics_equal_scikit_learn_on_the_same_arrays() -> None:
    y, p = _random_case()
    names = [f"c{i}" for i in range(5)]
    e = Evaluation(y, p, names, [str(i) for i in range(len(y))])
    pred = p.argmax(1)
    assert e.accuracy == pytest.approx(metrics.accuracy_score(y, pred))
    assert np.array_equal(e.confusion_matrix, metrics.confusion_matrix(y, pred))
    sk = metrics.classification_report(y, pred, target_names=names, output_dict=True)
    for c in names:
        assert e.report[c]["precision"] == pytest.approx(sk[c]["precision"])
        assert e.report[c]["recall"] == pytest.approx(sk[c]["recall"])
        assert e.report[c]["f1"] == pytest.approx(sk[c]["f1-score"])
        assert e.report[c]["support"] == sk[c]["support"]
    assert e.averages["macro"]["f1"] == pytest.approx(sk["macro avg"]["f1-score"])
    assert e.averages["weighted"]["f1"] == pytest.approx(sk["weighted avg"]["f1-score"])
    onehot = np.eye(5)[y]
    for i, c in enumerate(names):
        assert e.roc_auc[c] == pytest.approx(metrics.roc_auc_score(onehot[:, i], p[:, i]))
    assert e.roc_auc["macro"] == pytest.approx(metrics.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert e.roc_auc["micro"] == pytest.approx(metrics.roc_auc_score(onehot, p, average="micro"))
    for k in (1, 2, 3):
        assert e.top_k_accuracy(k) == pytest.approx(metrics.top_k_accuracy_score(y, p, k=k))
    assert e.no_information_rate == pytest.approx(Counter(y.tolist()).most_common(1)[0][1] / len(y))
    assert 0.3 < e.accuracy < 0.9  # a case where the metrics are not trivially 0 or 1


def test_every_sample_lands_in_exactly_the_groups_its_pair_implies() -> None:
    y, p = _random_case(seed=1)
    names = [f"c{i}" for i in range(5)]
    e = Evaluation(y, p, names, [str(i) for i in range(len(y))])
    g = e.groups
    for i, (t, q) in enumerate(zip(y, e.y_pred, strict=True)):
        member = {
            (kind, c)
            for kind, table in (("tp", g.true_positives), ("fp", g.false_positives), ("fn", g.false_negatives))
            for c, idx in table.items()
            if i in idx
        }
        expected = {("tp", names[t])} if t == q else {("fn", names[t]), ("fp", names[q])}
        assert member == expected, i
    wrong = int((y != e.y_pred).sum())
    assert sum(map(len, g.true_positives.values())) == len(y) - wrong
    assert sum(map(len, g.false_positives.values())) == wrong == sum(map(len, g.false_negatives.values()))
    assert sorted(g.most_confident_errors.tolist()) == np.flatnonzero(y != e.y_pred).tolist()
    conf = p[g.most_confident_errors, e.y_pred[g.most_confident_errors]]
    assert np.all(np.diff(conf) <= 0)
    for t in range(5):
        for q in range(5):
            assert len(g.confused(t, q)) == e.confusion_matrix[t, q]


def test_class_missing_from_labels_has_no_auc_and_macro_uses_the_others() -> None:
    y, p = _random_case(n=100, k=4, seed=2)
    y[y == 3] = 0
    e = Evaluation(y, p, ["a", "b", "c", "d"], [str(i) for i in range(100)])
    assert np.isnan(e.roc_auc["d"])
    assert e.roc_auc["macro"] == pytest.approx(np.mean([e.roc_auc[c] for c in "abc"]))
    assert e.report["d"]["support"] == 0


def test_probability_table_csv(tmp_path: Path) -> None:
    e = _hand()
    path = e.to_csv(tmp_path / "probs.csv", top=2)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    assert [r["true"] for r in rows] == [NAMES[t] for t in Y]
    assert [r["predicted"] for r in rows] == [r["top1"] for r in rows]
    assert float(rows[5]["p_true"]) == pytest.approx(0.4) and rows[5]["predicted"] == "cat"
    assert rows[6]["top2"] == "dog" and float(rows[6]["p_top2"]) == pytest.approx(0.35)
    errors = e.to_csv(tmp_path / "errors.csv", rows=e.groups.most_confident_errors)
    assert errors.read_text().count("\n") == 1 + 3


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(CnnlensError, match=r"\(N, K\)"):
        Evaluation(Y, P[:, :2], NAMES, list("abcdefg"))
    with pytest.raises(CnnlensError, match="between 1 and"):
        _hand().top_k_accuracy(4)


# -- evaluate(): running a model ----------------------------------------------------------------------


class _Net(nn.Module):
    """Logits = a fixed linear map of the per-channel means, after BatchNorm and Dropout (train/eval differ)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.fc = nn.Linear(3, 3)
        self.bn.running_mean.fill_(0.1)
        self.bn.running_var.fill_(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.bn(x).mean((2, 3))))


def _snapshot(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_evaluate_tensors_in_eval_mode_and_leaves_the_model_unchanged() -> None:
    net = _Net().train()
    net.fc.weight.requires_grad_(False)
    before = _snapshot(net)
    x = torch.randn(10, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    e = evaluate(net, (x, y), batch_size=3, classes=["a", "b", "c"], progress=False)
    assert net.training and net.bn.training and net.drop.training
    assert not net.fc.weight.requires_grad and net.fc.bias.requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # running stats untouched
    with torch.no_grad():
        expected = torch.softmax(_Net().eval()(x).double(), 1).numpy()  # same weights (seeded), eval mode
    assert np.allclose(e.probabilities, expected, atol=1e-6)
    assert e.y_true.tolist() == y.tolist()
    assert e.ids == [str(i) for i in range(10)]
    whole = evaluate(net, (x, y), batch_size=64, classes=["a", "b", "c"], progress=False)
    assert np.allclose(whole.probabilities, e.probabilities, atol=1e-6)


def test_model_flags_restored_when_forward_raises() -> None:
    class Broken(_Net):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    net = Broken().train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(net, (torch.zeros(2, 3, 4, 4), [0, 1]), classes=["a", "b", "c"], progress=False)
    assert all(m.training for m in net.modules())


def test_wrong_number_of_outputs_and_class_name_mismatch() -> None:
    net = _Net()
    with pytest.raises(CnnlensError, match="4 classes"):
        evaluate(net, (torch.zeros(2, 3, 4, 4), [0, 1]), classes=list("abcd"), progress=False)
    clf = Classifier(net, Preprocessing((4, 4), None, 0.5, 0.5), ["a", "b", "c"])

    class Data:
        classes = ["b", "a", "c"]

        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            return np.zeros((4, 4), np.uint8), 0

    with pytest.raises(CnnlensError, match="classes=model.class_names"):
        evaluate(clf, Data(), progress=False)


def _folder_with_corrupt_file(root: Path) -> Path:
    for label, value in (("dark", 20), ("light", 230)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), value + i, np.uint8)).save(root / label / f"{i}.png")
    bad = root / "light" / "broken.png"
    bad.write_bytes((root / "light" / "0.png").read_bytes()[:20])  # truncated PNG
    return bad


class _Brightness(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((1, 2, 3))
        return torch.stack([-10 * m, 10 * m], 1)


def test_corrupt_file_is_skipped_and_reported_or_raises(tmp_path: Path) -> None:
    bad = _folder_with_corrupt_file(tmp_path)
    clf = Classifier(_Brightness(), Preprocessing((4, 4), None, 0.5, 0.5), ["dark", "light"])
    data = ImageFolder(tmp_path)
    assert len(data) == 7
    with pytest.warns(CnnlensWarning, match="broken.png"):
        e = evaluate(clf, data, batch_size=2, progress=False)
    assert [p for p, _ in e.skipped] == [str(bad)]
    assert "truncated" in e.skipped[0][1] or "decode" in e.skipped[0][1]
    assert len(e.y_true) + len(e.skipped) == 7  # nothing lost
    assert str(bad) not in e.ids and len(e.ids) == 6
    assert e.accuracy == 1.0
    with pytest.raises(CnnlensError, match="broken.png"):
        evaluate(clf, ImageFolder(tmp_path, on_error="raise"), progress=False)


def test_skipped_samples_keep_rows_mapped_to_dataset_positions_and_everything_is_saved(tmp_path: Path) -> None:
    import json

    from cnnlens.evaluation import save_evaluation

    bad = _folder_with_corrupt_file(tmp_path / "data")
    data = ImageFolder(tmp_path / "data")
    clf = Classifier(_Brightness(), Preprocessing((4, 4), None, 0.5, 0.5), ["dark", "light"])
    with pytest.warns(CnnlensWarning):
        e = evaluate(clf, data, progress=False)
    bad_position = data.ids.index(str(bad))
    assert bad_position not in e.positions.tolist()
    assert [data.ids[p] for p in e.positions] == e.ids  # row i is dataset sample positions[i]
    written = save_evaluation(e, tmp_path / "out", dataset=data)
    assert {p.name for p in written.values()} == {
        "confusion_matrix.png",
        "roc.png",
        "metrics.png",
        "samples.png",
        "probabilities.csv",
        "errors.csv",
        "metrics.json",
    }  # no errors.png: nothing is misclassified
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["accuracy"] == 1.0 and saved["skipped"][0]["id"] == str(bad)
    assert saved["confusion_matrix"] == [[3, 0], [0, 3]]


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    x = torch.zeros(5, 3, 4, 4)
    evaluate(_Net(), (x, [0, 1, 2, 0, 1]), classes=list("abc"), batch_size=2)
    captured = capsys.readouterr()
    assert "evaluating" in captured.err and "5/5" in captured.err and captured.out == ""


def test_digits_as_png_folder_and_csv_give_the_same_predictions_as_in_memory(tmp_path: Path) -> None:
    from _digits_session import trained_digits
    from cnnlens.data import ArrayImages, CsvImages, digits

    model = trained_digits()
    field = digits("field")
    chosen = [int(i) for d in range(10) for i in np.flatnonzero(field.labels == d)[:2]]  # 2 field digits per class
    lines = []
    for i in chosen:
        image, label = field[i]
        path = tmp_path / "png" / str(label) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        lines.append(f"png/{label}/{i}.png,{label}")
    (tmp_path / "list.csv").write_text("\n".join(lines))
    subset = ArrayImages(field.images[chosen], field.labels[chosen], field.classes, ids=[str(i) for i in chosen])
    reference = evaluate(model, subset, progress=False)
    by_id = dict(zip(reference.ids, reference.probabilities, strict=True))
    folder = ImageFolder(tmp_path / "png", classes=model.class_names)
    for data in (folder, CsvImages(tmp_path / "list.csv", classes=model.class_names)):
        e = evaluate(model, data, batch_size=7, progress=False)
        assert len(e.ids) == 20
        assert e.y_true.tolist() == [int(field.labels[int(Path(i).stem)]) for i in e.ids]
        for row, sample_id in enumerate(e.ids):
            assert np.allclose(e.probabilities[row], by_id[Path(sample_id).stem], atol=1e-5), sample_id
