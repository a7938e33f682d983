"""The classes a model's outputs stand for, and their probabilities.

A model with ``K >= 2`` outputs has ``K`` classes scored by its logits, whose probabilities are their softmax. A
model with a single output logit ``z`` is a binary classifier with two classes, the logit and its negation:
class 1 ("positive") is scored by ``z``, class 0 ("negative") by ``-z``; their probabilities are
``sigmoid(-z)`` and ``sigmoid(z)`` (never a softmax over one logit, which is 1 everywhere), and the predicted
class is 1 when ``z > 0``.
"""

from __future__ import annotations

import torch

T = torch.Tensor

ONE_LOGIT_CLASSES = ("negative", "positive")
"""The class names of a one-logit model when none are given: class 0 is ``-z``, class 1 is ``z``."""


def class_count(outputs: int) -> int:
    """The number of classes of a model with ``outputs`` logits per image (2 for a one-logit model)."""
    return 2 if int(outputs) == 1 else int(outputs)


def default_class_names(outputs: int) -> list[str]:
    """Class names when none are given: ``["negative", "positive"]`` for one logit, else ``"0".."K-1"``."""
    return list(ONE_LOGIT_CLASSES) if int(outputs) == 1 else [str(i) for i in range(int(outputs))]


def class_scores(logits: T) -> T:
    """The score of every class, ``(N, classes)``, from the logits ``(N, K)``: the logits themselves, or for one
    logit ``z`` the pair ``[-z, z]`` (differentiable, so explaining class 0 explains ``-z``)."""
    return torch.cat([-logits, logits], dim=1) if logits.shape[1] == 1 else logits


def class_probabilities(logits: T) -> T:
    """Probabilities of the classes, ``(N, classes)``: the softmax of ``(N, K >= 2)`` logits, or for one logit
    ``z`` the pair ``[sigmoid(-z), sigmoid(z)]``."""
    if logits.shape[1] == 1:
        return torch.sigmoid(class_scores(logits))
    return torch.softmax(logits, dim=1)


def class_rows(weight: T) -> T:
    """The rows of a last linear layer's weight ``(K, C)`` per class: the weight itself, or for one logit ``w``
    the rows ``[-w, w]`` (class 0 is the negated logit)."""
    return torch.cat([-weight, weight], dim=0) if weight.shape[0] == 1 else weight
