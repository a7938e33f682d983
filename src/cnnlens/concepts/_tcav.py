"""TCAV: does a user's concept (a set of example images) push the model towards a class? (Kim et al. 2018)

A concept activation vector (CAV) is the normal of a linear classifier (scikit-learn's logistic regression) that
separates the layer's activations of the concept images from those of random images. The TCAV score is the share
of the class images whose class score increases along the CAV (positive directional derivative, from one backward
pass through the model's tail). One score per random set (the negatives). The null distribution: scores of CAVs
of one random set against another, a different pair per run. Significance: a two-sided t-test (SciPy's t
distribution) of where the concept's mean score falls in the null distribution, ``t = (mean - null mean) /
(null sd * sqrt(1 + 1/r))`` with ``r - 1`` degrees of freedom; a concept whose p-value is not below ``alpha`` is
marked "not significant" (a CAV can point somewhere by chance). Comparing the two means instead (as the original
code does) would be anti-conservative: every concept run shares the one concept set, so its scores vary less
than scores of different sets do, and random concept sets come out "significant" far more often than ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression

from ..core.errors import CnnlensError
from ..core.model_guard import frozen
from ..core.progress import honours_progress, progress_bar
from ..models import Classifier, cut_at
from ..models import as_module as _as_module
from ._inputs import as_batch, choose_layer, class_images, class_index

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..data import ImageInput
    from ..models import Cut
    from ._extract import ClassImages

T = torch.Tensor


@dataclass
class TCAV:
    """TCAV of one concept for one class at one layer (``r`` random runs, ``d`` = the layer's output size)."""

    concept: str
    class_index: int
    class_name: str
    layer: str
    scores: np.ndarray
    """``(r,)`` TCAV score (share of class images with a positive directional derivative) per random set."""
    random_scores: np.ndarray
    """``(r,)`` the same for CAVs of random set ``i`` against random set ``i + 1`` (the null distribution)."""
    cavs: np.ndarray
    """``(r, d)`` unit CAVs (pointing towards the concept) over the flattened layer output ``(c, h, w)``."""
    accuracies: np.ndarray
    """``(r,)`` training accuracy of each concept-vs-random classifier."""
    p_value: float
    alpha: float

    @property
    def score(self) -> float:
        """Mean TCAV score over the random sets."""
        return float(self.scores.mean())

    @property
    def significant(self) -> bool:
        """Whether the scores differ from the random-vs-random scores (two-sided t-test, ``p < alpha``)."""
        return bool(self.p_value < self.alpha)

    def __str__(self) -> str:
        verdict = "significant" if self.significant else "not significant"
        return (
            f"TCAV {self.concept!r} -> class {self.class_name} at {self.layer}: {self.score:.2f} "
            f"(random {self.random_scores.mean():.2f}, p = {self.p_value:.3g}, {verdict})"
        )


@honours_progress
def tcav(
    model: Classifier | torch.nn.Module,
    concept: ImageInput | Sequence[ImageInput] | torch.Tensor,
    random: ImageInput | Sequence[ImageInput] | torch.Tensor,
    class_: int | str,
    data: ClassImages,
    layer: str | None = None,
    *,
    name: str = "concept",
    runs: int = 10,
    alpha: float = 0.05,
    images: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> TCAV:
    """TCAV score and significance of ``concept`` (images or an input tensor) for class ``class_`` (Kim et al.
    2018, "Interpretability beyond feature attribution: testing with concept activation vectors").

    ``random``: a pool of random images (at least ``runs + 1`` times the concept's size is best; sets are drawn
    without replacement when the pool allows, under ``seed``). ``data``: the class images (a dataset whose samples
    of the class are used, or images). ``layer``: default as for :func:`cnnlens.concepts.extract`.

    Returns :class:`TCAV`. Raises ``CnnlensError`` for fewer than 2 concept images, a random pool smaller than the
    concept set, fewer than 2 runs, or a class without images.
    """
    module = _as_module(model)
    index, class_name = class_index(model, class_, data)
    if int(runs) < 2:
        raise CnnlensError(f"runs must be at least 2 for a t-test; got {runs}.")
    xc, xr = as_batch(model, concept), as_batch(model, random)
    if len(xc) < 2:
        raise CnnlensError(f"a concept needs at least 2 example images; got {len(xc)}.")
    if len(xr) < len(xc):
        raise CnnlensError(
            f"the random pool has {len(xr)} images, fewer than the concept's {len(xc)}; pass more random images."
        )
    x, _ = class_images(model, data, index, int(images), seed)
    rng = np.random.default_rng(seed)
    sets = _random_sets(rng, len(xr), len(xc), int(runs) + 1)
    with frozen(module):
        name_used = layer if layer is not None else choose_layer(module, x, None).name
        cut = cut_at(module, name_used)
        flat = lambda t: torch.cat([cut.head(t[i : i + 64])[0].flatten(1) for i in range(0, len(t), 64)])  # noqa: E731
        with torch.no_grad():
            ac, ar = flat(xc).double().cpu().numpy(), flat(xr).double().cpu().numpy()
        grads = _gradients(cut, x, index)
    scores, random_scores, cavs, accs = [], [], [], []
    for i in progress_bar(range(int(runs)), desc="TCAV runs", unit="run", delay=2.0):
        cav, acc = _cav(ac, ar[sets[i + 1]], seed)
        null, _ = _cav(ar[sets[i]], ar[sets[i + 1]], seed)
        scores.append(float(np.mean(grads @ cav > 0)))
        random_scores.append(float(np.mean(grads @ null > 0)))
        cavs.append(cav)
        accs.append(acc)
    scores_a, random_a = np.asarray(scores), np.asarray(random_scores)
    p = _p_value(scores_a, random_a)
    return TCAV(name, index, class_name, name_used, scores_a, random_a, np.stack(cavs), np.asarray(accs), p, alpha)


def _p_value(scores: np.ndarray, null: np.ndarray) -> float:
    """Two-sided p-value of the mean of ``scores`` as a new draw from the distribution of ``null`` (t, r - 1 dof)."""
    diff, spread = scores.mean() - null.mean(), null.std(ddof=1) * np.sqrt(1.0 + 1.0 / len(null))
    if spread == 0:
        return 1.0 if diff == 0 else 0.0
    return float(2.0 * stats.t.sf(abs(diff) / spread, len(null) - 1))


def _random_sets(rng: np.random.Generator, pool: int, size: int, sets: int) -> list[np.ndarray]:
    """``sets`` index sets of ``size``: disjoint while the pool allows, else each drawn without replacement."""
    if pool >= size * sets:
        perm = rng.permutation(pool)
        return [perm[i * size : (i + 1) * size] for i in range(sets)]
    return [rng.choice(pool, size=size, replace=False) for _ in range(sets)]


def _cav(positive: np.ndarray, negative: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Unit normal of a logistic regression separating ``positive`` from ``negative`` rows, and its accuracy."""
    x = np.concatenate([positive, negative])
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x, y)
    w = clf.coef_[0]
    return w / max(np.linalg.norm(w), 1e-30), float(clf.score(x, y))


def _gradients(cut: Cut, x: T, index: int) -> np.ndarray:
    """``(n, d)`` gradients of the class score w.r.t. the flattened layer output, one backward pass per batch."""
    out = []
    for start in range(0, len(x), 64):
        with torch.no_grad():
            a, state = cut.head(x[start : start + 64])
        a = a.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = cut.tail(a, state)
            (grad,) = torch.autograd.grad(logits[:, index].sum(), a)
        out.append(grad.flatten(1).double().cpu().numpy())
    return np.concatenate(out)
