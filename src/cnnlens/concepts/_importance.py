"""Class scores of activations rebuilt from masked concepts, run through the model's tail only.

A mask ``m`` in ``[0, 1]^k`` scales each concept's coefficients everywhere in the image: the layer then outputs
``sum_k m_k U_k W_k``; the tail gives the class scores. Sobol total indices over random masks rank the concepts
(CRAFT, Fel et al. 2023); masks of ones and zeros give deletion curves.
"""

from __future__ import annotations

import numpy as np
import torch

from ..models import Cut, State
from ._factor import Factorization
from ._sobol import sobol_total

T = torch.Tensor
ROW_BUDGET = 1 << 23  # activation values per tail batch (32 MB of float32)


def masked_scores(
    cut: Cut, fact: Factorization, u: np.ndarray, state: State, masks: np.ndarray, classes: list[int], like: T
) -> np.ndarray:
    """Scores ``(n, len(classes))`` of one image (coefficients ``u`` ``(h, w, k)``, ``state`` of one row) under
    ``masks`` ``(n, k)``. Only the tail runs; ``like`` gives dtype and device."""
    parts = torch.as_tensor(u, dtype=like.dtype, device=like.device)  # (h, w, k)
    d = torch.as_tensor(fact.directions, dtype=like.dtype, device=like.device)  # (k, c)
    per_concept = torch.einsum("hwk,kc->kchw", parts, d).reshape(len(d), -1)  # (k, c*h*w)
    shape = (d.shape[1], *u.shape[:2])
    step = max(1, ROW_BUDGET // max(1, per_concept.shape[1]))
    out = []
    with torch.no_grad():
        for start in range(0, len(masks), step):
            m = torch.as_tensor(masks[start : start + step], dtype=like.dtype, device=like.device)
            a = (m @ per_concept).reshape(len(m), *shape)
            logits = cut.tail(a, state.take(torch.zeros(len(m), dtype=torch.long)))
            out.append(logits[:, classes].double().cpu().numpy())
    return np.concatenate(out)


def image_importance(
    cut: Cut,
    fact: Factorization,
    u: np.ndarray,
    state: State,
    classes: list[int],
    like: T,
    designs: int,
    seed: int,
) -> np.ndarray:
    """Total Sobol indices ``(len(classes), k)`` of the concepts for the class scores of one image."""
    k = u.shape[-1]
    return sobol_total(lambda m: masked_scores(cut, fact, u, state, m, classes, like), k, designs, seed).reshape(
        len(classes), k
    )


def deletion_masks(order: list[int] | np.ndarray, k: int) -> np.ndarray:
    """``(k + 1, k)`` masks: all concepts, then without ``order[0]``, without ``order[:2]``, ... none."""
    masks = np.ones((len(order) + 1, k))
    for step, c in enumerate(order):
        masks[step + 1 :, c] = 0.0
    return masks
