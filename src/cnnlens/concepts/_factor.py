"""Crops of images at several scales, the layer's activations, and their non-negative matrix factorization.

Every spatial position of a layer's output is one row (its channel vector); NMF writes the rows as
``A ~ U W`` with ``U >= 0`` (how much of each concept is at each position) and ``W >= 0`` (each concept's
channel-space direction). ICE (Zhang et al. 2021) and CRAFT (Fel et al. 2023) factorize this way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from ..core.progress import progress_bar
from ..models import Cut, State

T = torch.Tensor


def crop_boxes(n: int, size: tuple[int, int], scales: tuple[float, ...], per_scale: int, seed: int) -> np.ndarray:
    """``(m, 5)`` int boxes ``(image, top, left, height, width)``: ``per_scale`` random crops per image and scale."""
    rng = np.random.default_rng(seed)
    h, w = size
    boxes = []
    for i in range(n):
        for s in scales:
            ch, cw = max(1, round(h * s)), max(1, round(w * s))
            for _ in range(per_scale):
                boxes.append((i, rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1), ch, cw))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 5)


def crops(x: T, boxes: np.ndarray) -> T:
    """The crops ``boxes`` of inputs ``x``, each resized (bilinear) to the input size."""
    size = x.shape[-2:]
    out = [
        F.interpolate(x[i : i + 1, :, t : t + h, left : left + w], size=size, mode="bilinear", align_corners=False)
        for i, t, left, h, w in boxes.tolist()
    ]
    return torch.cat(out) if out else x[:0]


def activations(cut: Cut, x: T, rectify: bool, batch: int, desc: str) -> tuple[T, State]:
    """The layer's output ``(N, c, h, w)`` for inputs ``x`` (rectified if asked) and the tail's state."""
    acts, states = [], []
    with torch.no_grad():
        for start in progress_bar(range(0, len(x), batch), desc=desc, unit="batch", delay=2.0, leave=False):
            a, s = cut.head(x[start : start + batch])
            acts.append(a.clamp(min=0) if rectify else a)
            states.append(s)
    return torch.cat(acts), State.cat(states)


def rows(a: T) -> np.ndarray:
    """``(N, c, h, w)`` -> ``(N * h * w, c)`` float32 rows, one per position."""
    return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).float().cpu().numpy()


@dataclass
class Factorization:
    """A fitted NMF with unit-norm concept directions: ``A ~ coefficients(A) @ directions``."""

    nmf: NMF
    norms: np.ndarray

    @property
    def directions(self) -> np.ndarray:
        """``(k, c)``: each concept's unit direction in channel space."""
        return self.nmf.components_ / self.norms[:, None]

    def coefficients(self, a: T) -> np.ndarray:
        """``(N, h, w, k)`` concept coefficients of activations ``(N, c, h, w)`` (directions fixed)."""
        n, _, h, w = a.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            u = self.nmf.transform(rows(a))
        return (u * self.norms).reshape(n, h, w, -1)

    def reconstruct(self, u: np.ndarray | T, like: T) -> T:
        """Activations ``(N, c, h, w)`` from coefficients ``(N, h, w, k)``, as ``like``'s dtype and device."""
        u = torch.as_tensor(u, dtype=like.dtype, device=like.device)
        d = torch.as_tensor(self.directions, dtype=like.dtype, device=like.device)
        return (u @ d).permute(0, 3, 1, 2).contiguous()


FIT_ROWS = 16384
"""NMF learns the directions from at most this many rows (drawn under the seed); every row gets coefficients."""


def factorize(data: np.ndarray, k: int, seed: int, max_iter: int = 500) -> Factorization:
    """NMF with ``k`` concepts of rows ``data`` ``(n, c)`` (non-negative), deterministic under ``seed``."""
    nmf = NMF(n_components=k, init="nndsvda", solver="cd", max_iter=max_iter, tol=1e-4, random_state=seed)
    if len(data) > FIT_ROWS:
        data = data[np.sort(np.random.default_rng(seed).choice(len(data), size=FIT_ROWS, replace=False))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf.fit(data)
    norms = np.linalg.norm(nmf.components_, axis=1)
    return Factorization(nmf, np.where(norms > 0, norms, 1.0))
