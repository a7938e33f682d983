"""One image in a class's concepts: where each concept is, how present it is, how much it drives the class score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.errors import CnnlensError
from ..core.model_guard import frozen
from ..models import as_module as _as_module
from ._extract import Concepts, cut_for, upsample
from ._factor import activations
from ._importance import image_importance
from ._inputs import as_batch

if TYPE_CHECKING:
    from ..data import ImageInput

PRESENT = 0.5
"""A concept is present in an image when its peak coefficient (its maximum over the image's positions) is at
least this share of the median peak over the class images."""


@dataclass
class ImageConcepts:
    """The concepts of ``concepts.class_name`` in one image (``k`` concepts, ``(H, W)`` the input size)."""

    concepts: Concepts
    input: torch.Tensor
    """``(C, H, W)`` the image as model input."""
    maps: np.ndarray
    """``(k, H, W)`` where each concept is (its NMF coefficient, upsampled)."""
    presence: np.ndarray
    """``(k,)`` each concept's peak coefficient in the image, as a share of its median peak in the class images."""
    contributions: np.ndarray
    """``(k,)`` total Sobol index of each concept for this image's class score (model tail only)."""
    score: float
    """The class score (logit) of the image."""

    @property
    def present(self) -> np.ndarray:
        """Indices of the concepts present in the image (see ``PRESENT``), most contributing first."""
        idx = np.flatnonzero(self.presence >= PRESENT)
        return idx[np.argsort(-self.contributions[idx], kind="stable")]


@dataclass
class ErrorConcepts:
    """An error in concepts: the wrong class's concepts the image showed, the true class's concepts it lacked."""

    true: ImageConcepts
    predicted: ImageConcepts

    @property
    def shown(self) -> np.ndarray:
        """Concepts of the predicted (wrong) class present in the image, most contributing first."""
        return self.predicted.present

    @property
    def lacked(self) -> np.ndarray:
        """Concepts of the true class absent from the image, most important for the class first."""
        idx = np.flatnonzero(self.true.presence < PRESENT)
        return idx[np.argsort(-self.true.concepts.importance[idx], kind="stable")]


def explain_image(concepts: Concepts, image: ImageInput | torch.Tensor) -> ImageConcepts:
    """Which of ``concepts`` appear where in ``image`` (a path, PIL image, array or ``(C, H, W)`` input) and how
    much each contributes to the class score (total Sobol indices of concept masks, as in :func:`extract`).

    The model is the one the concepts were extracted from; it is left as it was."""
    if concepts.model is None or concepts.factorization is None:
        raise CnnlensError("these concepts carry no model; extract them again with cnnlens.concepts.extract.")
    x = as_batch(concepts.model, image)
    if len(x) != 1:
        raise CnnlensError(f"explain_image takes one image; got {len(x)}.")
    module = _as_module(concepts.model)
    cut = cut_for(concepts)
    with frozen(module):
        a, state = activations(cut, x, concepts.rectified, 1, "image activations")
        u = concepts.factorization.coefficients(a)[0]
        with torch.no_grad():
            score = float(cut.tail(a, state)[0, concepts.class_index])
        contrib = image_importance(
            cut, concepts.factorization, u, state, [concepts.class_index], a, concepts.designs, concepts.seed
        )[0]
    typical = np.median(concepts.coefficients.max(axis=(1, 2)), axis=0)
    presence = u.max(axis=(0, 1)) / np.maximum(typical, 1e-12)
    maps = upsample(u, (x.shape[-2], x.shape[-1]))
    return ImageConcepts(concepts, x[0].detach().cpu(), maps, presence, contrib, score)


def explain_error(image: ImageInput | torch.Tensor, true: Concepts, predicted: Concepts) -> ErrorConcepts:
    """An image of class ``true.class_name`` that the model took for ``predicted.class_name``, in the concepts of
    both classes (extracted from the same model at the same layer)."""
    if true.model is not predicted.model or true.layer != predicted.layer:
        raise CnnlensError(
            "the two concept sets come from different models or layers; extract both from one model at one layer."
        )
    return ErrorConcepts(explain_image(true, image), explain_image(predicted, image))
