"""Issue 26, case 9: ``baseline="noise"`` follows ``seed=``; ``evaluate`` takes a data folder as the command line
does; a tensor normalised twice (outside the range any image reaches after the normalisation) gets a warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlens
from cnnlens import quality as q
from cnnlens.data import ImageFolder, sample_image
from cnnlens.evaluation import evaluate
from cnnlens.models import Classifier, InputRangeWarning, Preprocessing

T = torch.Tensor
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def _net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)
    ).eval()


def _classifier(classes: list[str] | None = None) -> Classifier:
    prep = Preprocessing(input_size=(16, 16), resize=None, **IMAGENET)
    return Classifier(_net(3 if classes is None else len(classes)), prep, class_names=classes)


# ---- (a) the noise baseline draws from the run's generator --------------------------------------------------------
@pytest.mark.parametrize("classifier", [False, True], ids=["module", "classifier"])
def test_noise_baseline_follows_the_seed(classifier: bool) -> None:
    clf = _classifier()
    model = clf if classifier else clf.module
    x = clf.preprocess([sample_image("chelsea")])

    def run(seed: int) -> T:
        opts = {"baseline": "noise", "steps": 4, "target": 0, "seed": seed, "progress": False}
        return cnnlens.explain(model, x, "integrated_gradients", **opts).attributions

    torch.testing.assert_close(run(1), run(1), rtol=0, atol=0)
    assert not torch.equal(run(1), run(2))


def test_noise_baseline_of_a_distribution_follows_the_seed() -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def run(seed: int) -> T:
        opts = {"baseline": ["noise", "noise"], "mask": "grid:4", "target": 0, "seed": seed, "progress": False}
        return cnnlens.explain(_net(), x, "feature_ablation", **opts).attributions

    torch.testing.assert_close(run(5), run(5), rtol=0, atol=0)
    assert not torch.equal(run(5), run(6))


def test_deletion_noise_baseline_follows_the_seed() -> None:
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def run(seed: int) -> T:
        opts = {"baseline": "noise", "steps": 4, "output": "logit", "seed": seed, "progress": False}
        curve = q.score("deletion", _net(), x, "saliency", **opts).curve
        assert curve is not None
        return curve

    torch.testing.assert_close(run(1), run(1), rtol=0, atol=0)
    assert not torch.equal(run(1)[:, 1:], run(2)[:, 1:])  # the start (nothing deleted) is the input's score


# ---- (b) evaluate takes a folder, as the command line does --------------------------------------------------------
def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "fox"]):
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("as_path", [False, True], ids=["str", "Path"])
def test_evaluate_opens_a_folder_like_the_command_line(tmp_path: Path, as_path: bool) -> None:
    root = _folder(tmp_path / "data")
    clf = _classifier(["cat", "dog", "fox"])
    ev = evaluate(clf, root if as_path else str(root), progress=False)
    same = evaluate(clf, ImageFolder(root, classes=clf.class_names), progress=False)
    assert ev.classes == ["cat", "dog", "fox"] and ev.ids == same.ids and len(ev.ids) == 6
    np.testing.assert_array_equal(ev.probabilities, same.probabilities)


def test_evaluate_says_what_to_pass_for_a_path_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(cnnlens.CnnlensError, match="a folder with one sub-folder per class"):
        evaluate(_classifier(), str(tmp_path / "missing"), progress=False)


# ---- (c) a tensor normalised twice ----------------------------------------------------------------------------------
def test_a_tensor_normalised_twice_gets_a_warning_with_the_cause() -> None:
    clf = _classifier()
    x = clf.preprocess([sample_image("chelsea")])
    twice = clf.preprocessing.normalize(x)
    assert float(twice.amin()) < -7  # images reach -2.12 at least; twice normalised, down to -11.4
    with pytest.warns(
        InputRangeWarning, match=r"normalised twice .*outside \[\(0 - mean\) / std, \(1 - mean\) / std\]"
    ):
        cnnlens.explain(clf, twice, "saliency", progress=False)
    with pytest.warns(InputRangeWarning, match=r"classifier\.preprocess\(images\)"):
        clf.predict(twice)
    with pytest.warns(InputRangeWarning, match="normalised twice"):
        q.score("deletion", clf, twice, "saliency", steps=2, progress=False)


def test_inputs_in_the_range_of_images_are_explained_without_a_warning() -> None:
    """Images, noise around them and values a little outside (within the tolerance) say nothing; nor do the
    rows a metric makes from its inputs (here sensitivity_max moves them within a ball)."""
    clf = _classifier()
    x = clf.preprocess([sample_image("chelsea")])
    p = clf.preprocessing
    edges = p.normalize(torch.tensor([-0.9, 1.9, 0.5]).view(1, 3, 1, 1).expand(1, 3, 16, 16).contiguous())
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        for inputs in (x, x + 0.1 * torch.randn_like(x), torch.randn(2, 3, 16, 16), edges):
            cnnlens.explain(clf, inputs, "saliency", progress=False)
        clf.predict(x)
        q.score("sensitivity_max", clf, p.normalize(torch.ones(1, 3, 16, 16)), "saliency", samples=2, radius=0.5)
