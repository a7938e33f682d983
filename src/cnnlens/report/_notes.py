"""Short plain-language sentences made from numbers, for readers who are not machine-learning experts.

Every function is pure: numbers in, sentences out (``None`` or ``[]`` when there is nothing worth saying).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.errors import CnnlensError

METHOD_NAMES = {
    "saliency": "saliency",
    "input_x_gradient": "input × gradient",
    "guided_backprop": "guided backprop",
    "integrated_gradients": "integrated gradients",
    "deeplift": "DeepLIFT",
    "deeplift_shap": "DeepLIFT-SHAP",
    "gradient_shap": "GradientSHAP",
    "cam": "CAM",
    "grad_cam": "Grad-CAM",
    "grad_cam_pp": "Grad-CAM++",
    "xgrad_cam": "XGrad-CAM",
    "layer_cam": "Layer-CAM",
    "hires_cam": "HiResCAM",
    "guided_grad_cam": "guided Grad-CAM",
    "score_cam": "Score-CAM",
    "ablation_cam": "Ablation-CAM",
    "eigen_cam": "Eigen-CAM",
    "eigen_grad_cam": "Eigen-Grad-CAM",
    "fullgrad": "FullGrad",
    "kernel_shap": "KernelSHAP",
    "shapley_sampling": "Shapley sampling",
    "lime": "LIME",
    "partition_shap": "partition SHAP",
    "rise": "RISE",
    "lrp": "LRP",
    "sglrp": "SGLRP",
    "clrp": "CLRP",
    "layer_lrp": "layer LRP",
}


def method_name(method: str) -> str:
    """Display name of a method: ``grad_cam`` -> ``Grad-CAM``; unknown names lose their underscores."""
    return METHOD_NAMES.get(method, method.replace("_", " "))


def pct(value: float) -> str:
    """0.978 -> ``97.8%``."""
    return f"{100 * float(value):.1f}%"


def _pct0(value: float) -> str:
    return f"{100 * float(value):.0f}%"


def _join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def accuracy_note(data: str, accuracy: float, no_information_rate: float, samples: int) -> str:
    """How often the model is right, next to the rate of always answering the most common class."""
    return (
        f"On the {data} ({samples} images) the model is right {pct(accuracy)} of the time; always answering "
        f"the most common class would be right {pct(no_information_rate)} of the time."
    )


def most_confused(confusion: np.ndarray, classes: Sequence[str], n: int = 3) -> list[tuple[str, str, int]]:
    """The ``n`` largest off-diagonal cells of a confusion matrix (rows = true class) as (true, predicted, count);
    ties keep row-major order; empty cells are left out."""
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise CnnlensError(f"Need a square confusion matrix with one row per class; got shape {cm.shape}.")
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)  # row-major order
    cells = sorted(((int(off[i, j]), int(i), int(j)) for i, j in zip(rows, cols, strict=True)), key=lambda c: -c[0])
    return [(str(classes[i]), str(classes[j]), c) for c, i, j in cells[: int(n)]]


def shift_note(accuracies: Mapping[str, float], confusions: Sequence[tuple[str, str, int]] = ()) -> str | None:
    """Accuracy from the best to the worst data set, and the most common error on the worst one."""
    if len(accuracies) < 2:
        return None
    best = max(accuracies, key=lambda k: accuracies[k])
    worst = min(accuracies, key=lambda k: accuracies[k])
    if best == worst or accuracies[best] == accuracies[worst]:
        return f"Accuracy is the same ({pct(accuracies[best])}) on every data set."
    text = f"Accuracy falls from {pct(accuracies[best])} on the {best} to {pct(accuracies[worst])} on the {worst}"
    if confusions:
        t, p, count = confusions[0]
        text += f"; the most common error there is {t} read as {p} ({_cases(count)})"
    return text + "."


def confusion_note(pairs: Sequence[tuple[str, str, int]], errors: int) -> str | None:
    """The most common mistakes and the share of all errors they make up."""
    if not pairs or errors <= 0:
        return None
    listed = ", ".join(f"{t} read as {p} ({_cases(c) if k == 0 else c})" for k, (t, p, c) in enumerate(pairs))
    total = sum(c for _, _, c in pairs)
    return f"The most common mistakes: {listed}; together {total} of the {errors} errors ({_pct0(total / errors)})."


def class_notes(report: Mapping[str, Mapping[str, float]], n: int = 3, below: float = 0.9) -> list[str]:
    """The classes with the lowest recall (found least often) and the lowest precision (answered wrongly most),
    each only if under ``below``."""
    notes = []
    recall = sorted((v["recall"], c) for c, v in report.items() if v.get("support", 1) > 0)
    low = [(r, c) for r, c in recall if r < below][: int(n)]
    if low:
        listed = ", ".join(f"{c} ({_pct0(r)} found)" for r, c in low)
        notes.append(f"The classes it recognises least often: {listed}.")
    precision = sorted((v["precision"], c) for c, v in report.items())
    low = [(p, c) for p, c in precision if p < below][: int(n)]
    if low:
        listed = ", ".join(f"{c} ({_pct0(p)} right)" for p, c in low)
        notes.append(f"The answers to trust least: when it says {listed}.")
    return notes


CHECK_BELOW = 0.9
"""Advice on checking answers: the answers given less than this probability are the "uncertain" ones."""


def advice_notes(
    accuracies: Mapping[str, float], wrong: np.ndarray | None = None, right: np.ndarray | None = None
) -> list[str]:
    """What to do, from the numbers: a large accuracy drop between data sets, and what checking the uncertain
    answers (probability below `CHECK_BELOW`) would catch, from the probabilities the model gave its ``wrong`` and
    ``right`` answers."""
    said = []
    if len(accuracies) > 1:
        best = max(accuracies, key=lambda k: accuracies[k])
        worst = min(accuracies, key=lambda k: accuracies[k])
        drop = accuracies[best] - accuracies[worst]
        if drop >= 0.1:
            said.append(
                f"The model was not made for images like the {worst} ({100 * drop:.0f} points less accurate than "
                f"on the {best}): add such images to its training data, or change the training images to look "
                "like them, then run this report again."
            )
    if wrong is not None and len(wrong):
        said.append(_checking_note(np.asarray(wrong), np.asarray(right if right is not None else [])))
    return said


def _checking_note(wrong: np.ndarray, right: np.ndarray) -> str:
    caught = int((wrong < CHECK_BELOW).sum())
    share = float((wrong < CHECK_BELOW).sum() + (right < CHECK_BELOW).sum()) / (len(wrong) + len(right))
    below = f"{_pct0(CHECK_BELOW)} probability"
    if caught == 0:
        every = "its only error was" if len(wrong) == 1 else f"all {len(wrong)} of its errors were"
        return (
            f"Do not rely on the model's confidence to catch its mistakes: {every} given at least {below}, so "
            "checking its uncertain answers would catch none of them; check a random sample of its answers instead, "
            "and look at the error groups above."
        )
    return (
        f"Checking the answers given less than {below} ({_pct0(share)} of the images) would catch {caught} of "
        f"its {len(wrong)} errors ({_pct0(caught / len(wrong))})."
    )


def recall_shift_note(before: Mapping[str, float], after: Mapping[str, float], data: str, n: int = 3) -> str | None:
    """The classes whose recall drops most from ``before`` to ``after`` (the ``data`` set)."""
    drops = sorted(((before[c] - after[c], c) for c in before if c in after), key=lambda d: -d[0])
    drops = [(d, c) for d, c in drops if d > 0][: int(n)]
    if not drops:
        return None
    listed = ", ".join(f"{c} ({_pct0(before[c])} → {_pct0(after[c])} found)" for _, c in drops)
    return f"The classes that suffer most on the {data}: {listed}."


def confidence_note(wrong: float, right: float | None = None) -> str | None:
    """Average confidence (probability of the answer) when wrong, and when right."""
    if wrong is None or math.isnan(wrong):
        return None
    text = f"The model is {_pct0(wrong)} sure on average when it is wrong"
    if right is not None and not math.isnan(right):
        text += f" and {_pct0(right)} when it is right"
    if wrong >= 0.8:
        return text + ": a confident answer is not a safe answer."
    if right is not None and right - wrong >= 0.2:
        return text + ": low confidence is a useful warning sign."
    return text + "."


def skipped_note(data: str, skipped: Sequence[tuple[str, str]], shown: int = 5) -> str | None:
    """The files of ``data`` that could not be read (``(id, reason)`` pairs), named with the reason."""
    if not skipped:
        return None
    listed = "; ".join(f"{name} ({reason})" for name, reason in skipped[:shown])
    more = f"; and {len(skipped) - shown} more (see metrics.json)" if len(skipped) > shown else ""
    return f"Skipped {len(skipped)} unreadable file(s) of the {data}, left out of every number: {listed}{more}."


def group_note(true: str, predicted: str, count: int, confidence: float) -> str:
    """One error group: how many, how sure."""
    return f"{true} read as {predicted}: {_cases(count)}, given {_pct0(confidence)} probability on average."


@dataclass(frozen=True)
class TopPixels:
    """The most important pixels of a map: their sorted flat ``indices`` and the map's ``shape`` (H, W)."""

    indices: np.ndarray
    shape: tuple[int, ...]


def top_pixels(attribution: np.ndarray, fraction: float = 0.1) -> TopPixels:
    """Sorted flat indices of the ``fraction`` most important pixels of a map ``(H, W)`` or ``(C, H, W)``
    (channels summed; importance = absolute value; ties broken by position), and the map's (H, W)."""
    a = np.asarray(attribution, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(0)
    if a.ndim != 2:
        raise CnnlensError(f"A map must be (H, W) or (C, H, W); got shape {a.shape}.")
    if not 0 < fraction <= 1:
        raise CnnlensError(f"fraction must be in (0, 1]; got {fraction}.")
    k = max(1, int(round(fraction * a.size)))
    return TopPixels(indices=np.sort(np.argsort(-np.abs(a).ravel(), kind="stable")[:k]), shape=a.shape)


def topk_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the ``fraction`` most important pixels of map ``a`` that are also among those of ``b``
    (see `top_pixels`)."""
    top_a, top_b = top_pixels(a, fraction), top_pixels(b, fraction)
    if top_a.shape != top_b.shape:
        raise CnnlensError(f"Maps must have the same size; got {top_a.shape} and {top_b.shape}.")
    return len(np.intersect1d(top_a.indices, top_b.indices, assume_unique=True)) / len(top_a.indices)


def agreement_note(a: str, b: str, overlap: float, fraction: float = 0.1) -> str:
    """``Grad-CAM and integrated gradients agree on 63% of the 10% most important pixels.``"""
    text = f"{method_name(a)} and {method_name(b)} agree on {_pct0(overlap)} of the {_pct0(fraction)} most important"
    text += " pixels."
    return text[0].upper() + text[1:]


def completeness_note(errors: Mapping[str, float | None], threshold: float = 0.1) -> str | None:
    """Methods whose attributions should add up to the score difference but miss it by more than ``threshold``
    (relative error, mean over images)."""
    off = [(m, e) for m, e in errors.items() if e is not None and not math.isnan(e) and e > threshold]
    if not off:
        return None
    names = _join([method_name(m) for m, _ in off])
    misses = _join([_pct0(e) for _, e in off])
    verb = "does" if len(off) == 1 else "do"
    return (
        f"{names[0].upper() + names[1:]} {verb} not add up here: the attributions miss the score difference they "
        f"explain by {misses} on average, so treat {'its map' if len(off) == 1 else 'their maps'} as approximate "
        "(more steps or samples would help, at a cost)."
    )


def inside_note(layer: str, true: str, predicted: str, like_true: float, like_predicted: float) -> str:
    """Whether a misread image's features entering the final ``layer`` look more like a correct ``true`` or a
    correct ``predicted`` (their correlations)."""
    closer = predicted if like_predicted > like_true else true
    return (
        f"In the features the final layer ({layer}) decides from, the misread {true} looks more like a correct "
        f"{closer}: correlation {like_true:.2f} with a correct {true}, {like_predicted:.2f} with a correct "
        f"{predicted}."
    )


def channels_note(layer: str, true: str, predicted: str, top: Sequence[tuple[int, float]]) -> str:
    """Which channels of ``layer`` carry the evidence for ``predicted`` in a misread ``true`` (channel, total)."""
    listed = ", ".join(f"{c} ({v:+.2g})" for c, v in top)
    return (
        f"In the misread {true}, the channels of {layer} that add most to the score of '{predicted}' are {listed} "
        f"(gradient x activation summed over each channel); their feature maps show what they respond to."
    )


def photo_note(photo: str, top: Sequence[tuple[str, float]]) -> str:
    """The model's answer for one photo, and the runner-up."""
    if not top:
        raise CnnlensError("photo_note needs at least one (class, probability) pair.")
    label, probability = top[0]
    text = f"{photo}: the model answers '{label}' ({_pct0(probability)})"
    if len(top) > 1:
        label, probability = top[1]
        text += f", then '{label}' ({_pct0(probability)})"
    return text + "."
