"""``extract``: the concepts a model uses for one class, their maps, typical crops, importance and fidelity."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import CnnlensError, say
from ..core.model_guard import frozen
from ..core.progress import honours_progress, progress_bar
from ..models import Classifier, Cut, cut_at
from ..models import as_module as _as_module
from ._factor import Factorization, activations, crop_boxes, crops, factorize, rows
from ._importance import deletion_masks, image_importance, masked_scores
from ._inputs import choose_layer, class_images, class_index
from ._sobol import DESIGNS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sklearn.decomposition import NMF

    from ..data import ImageDataset, ImageInput

    ClassImages: TypeAlias = ImageDataset[ImageInput | torch.Tensor] | ImageInput | Sequence[ImageInput] | torch.Tensor
    """A dataset whose samples of the class are used, or images / an ``(N, C, H, W)`` input that all show it."""

T = torch.Tensor
MIN_IMAGES = 2
NO_MODEL = "these concepts carry no model; extract them again with cnnlens.concepts.extract."


@dataclass
class Concepts:
    """The concepts of one class at one layer, numbered by importance (concept 0 matters most).

    Arrays: ``k`` concepts, ``c`` channels, ``n`` class images, ``(h, w)`` the layer's map, ``(H, W)`` the input.
    """

    class_index: int
    class_name: str
    layer: str
    rectified: bool
    """Whether the layer's negative outputs (which the model ignores) are set to 0 before factorizing."""
    directions: np.ndarray
    """``(k, c)`` unit vectors in channel space (NMF's components, non-negative)."""
    importance: np.ndarray
    """``(k,)`` mean total Sobol index of each concept for the class score over the class images (descending)."""
    image_importance: np.ndarray
    """``(r, k)`` the same per image, for the class images ``importance_rows`` ``(r,)``."""
    importance_rows: np.ndarray
    coefficients: np.ndarray
    """``(n, h, w, k)`` how much of each concept is at each position of each class image (NMF's ``U``)."""
    inputs: T
    """``(n, C, H, W)`` the class images as model input (CPU)."""
    ids: list[str]
    boxes: np.ndarray
    """``(m, 5)`` the crops ``(image, top, left, height, width)`` in input pixels."""
    crop_coefficients: np.ndarray
    """``(m, k)`` mean coefficient of each concept over each crop's positions."""
    typical: np.ndarray
    """``(k, t)`` indices into ``boxes`` of each concept's most typical crops (strongest first)."""
    scores: np.ndarray
    """``(n,)`` the class score (logit) of each image."""
    reconstructed_scores: np.ndarray
    """``(n,)`` the class score when the layer outputs the concepts' reconstruction ``U W``."""
    agreement: float
    """Share of the class images whose top class stays the same when the layer outputs ``U W``."""
    reconstruction_error: float
    """``||A - U W|| / ||A||`` over every position of the images and crops."""
    designs: int
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)
    """Time spent running the model, in NMF and in importance."""
    factorization: Factorization | None = field(default=None, repr=False)
    model: Classifier | torch.nn.Module | None = field(default=None, repr=False)

    @property
    def n_concepts(self) -> int:
        return len(self.directions)

    @property
    def fidelity(self) -> float:
        """R^2 of the reconstructed class scores against the original ones (1: the concepts explain them)."""
        s, r = self.scores, self.reconstructed_scores
        spread = float(((s - s.mean()) ** 2).sum())
        return 1.0 - float(((s - r) ** 2).sum()) / spread if spread > 0 else float(np.allclose(s, r))

    def maps(self, i: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """``(k, H, W)`` concept maps of class image ``i``, upsampled (bilinear) to the input size or ``size``."""
        return upsample(self.coefficients[i], size or (self.inputs.shape[-2], self.inputs.shape[-1]))

    def crop(self, j: int) -> T:
        """Crop ``j`` as model input ``(C, H, W)``, resized to the input size."""
        return crops(self.inputs, self.boxes[j : j + 1])[0]

    def pixels(self, x: T) -> np.ndarray:
        """``(N, H, W, 3)`` (or ``(N, H, W)`` for one channel) displayable values in ``[0, 1]`` of inputs ``x``."""
        x = x.unsqueeze(0) if x.ndim == 3 else x
        prep = getattr(self.model, "preprocessing", None)
        if prep is not None and x.shape[1] == 3:
            return prep.to_pixels(x)
        low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        out = ((x - low) / (high - low).clamp(min=1e-12)).permute(0, 2, 3, 1).cpu().numpy()
        return out[..., 0] if out.shape[-1] == 1 else out

    def deletion_curve(self, order: list[int] | np.ndarray | None = None) -> np.ndarray:
        """``(k + 1,)`` mean class score over the class images as concepts are deleted in ``order`` (default:
        by importance): all concepts, then without the first, ... without any. Only the model's tail runs."""
        order = np.arange(self.n_concepts) if order is None else np.asarray(order)
        if sorted(order.tolist()) != list(range(self.n_concepts)):
            raise CnnlensError(f"order must list each of the {self.n_concepts} concepts once; got {order.tolist()}.")
        masks = deletion_masks(order, self.n_concepts)
        if self.model is None or self.factorization is None:
            raise CnnlensError(NO_MODEL)
        fact = self.factorization
        module = _as_module(self.model)
        cut = cut_at(module, self.layer)
        with frozen(module):
            _, states = activations(cut, self.inputs, self.rectified, 64, "concept deletion")
            curves = [
                masked_scores(cut, fact, u, states.take(torch.tensor([i])), masks, [self.class_index],
                              self.inputs)[:, 0]
                for i, u in enumerate(self.coefficients)
            ]  # fmt: skip
        return np.mean(curves, axis=0)


def upsample(u: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w, k)`` coefficients -> ``(k, H, W)`` maps (bilinear)."""
    t = torch.as_tensor(np.ascontiguousarray(u.transpose(2, 0, 1)), dtype=torch.float32)[None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0].numpy()


@honours_progress
def extract(
    model: Classifier | torch.nn.Module,
    data: ClassImages,
    class_: int | str,
    layer: str | None = None,
    n_concepts: int = 10,
    *,
    images: int = 200,
    scales: tuple[float, ...] = (0.5, 0.75),
    crops_per_scale: int = 2,
    typical: int = 8,
    designs: int = DESIGNS,
    importance_images: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Concepts:
    """The concepts ``model`` uses for class ``class_`` (CRAFT, Fel et al. 2023; ICE, Zhang et al. 2021).

    ``data``: a dataset whose images of the class are used (at most ``images``, drawn under ``seed``), or images /
    an ``(N, C, H, W)`` input tensor that all show the class. ``layer``: a layer with non-negative outputs
    (default: the last one before global pooling, see ``cnnlens.concepts._inputs``). The class images and
    ``crops_per_scale`` random crops per image at each of ``scales`` (fractions of the side, resized to the input
    size) give one activation row per position; NMF factorizes them into ``n_concepts`` concepts. Importance: total
    Sobol indices of random concept masks (``designs`` quasi-random designs, ``designs * (k + 2)`` tail passes per
    image) for the class score of ``importance_images`` class images, evaluated with the model cut at ``layer``.

    Returns :class:`Concepts`; the model is left as it was. Raises ``CnnlensError`` for a class without images in
    the data, fewer than 2 images, a layer whose negative outputs matter, or more concepts than channels.
    """
    module = _as_module(model)
    index, name = class_index(model, class_, data)
    if int(n_concepts) < 1:
        raise CnnlensError(f"{say('n_concepts', '--concepts')} must be at least 1; got {n_concepts}.")
    if int(crops_per_scale) < 1 or not scales or not all(0 < float(v) <= 1 for v in scales):
        raise CnnlensError(
            f"crops need crops_per_scale >= 1 and scales in (0, 1]; got {crops_per_scale} and {tuple(scales)}."
        )
    if int(images) < MIN_IMAGES:
        raise CnnlensError(f"{say('images', '--images')} must be at least {MIN_IMAGES}; got {images}.")
    x, ids = class_images(model, data, index, int(images), seed)
    if len(x) < MIN_IMAGES:
        raise CnnlensError(
            f"concepts of class {name} need at least {MIN_IMAGES} images of it; got {len(x)}. Pass more images."
        )
    seconds = {"model": 0.0, "nmf": 0.0, "importance": 0.0}
    with frozen(module):
        start = time.perf_counter()
        chosen = choose_layer(module, x, layer)
        cut = cut_at(module, chosen.name)
        a, states = activations(cut, x, chosen.rectified, batch_size, "concept activations")
        boxes = crop_boxes(len(x), (x.shape[-2], x.shape[-1]), tuple(scales), int(crops_per_scale), seed)
        a_crops, _ = activations(cut, crops(x, boxes), chosen.rectified, batch_size, "crop activations")
        with torch.no_grad():
            logits = cut.tail(a, states)
        _check_logits(logits, index)
        seconds["model"] += time.perf_counter() - start
        if int(n_concepts) > a.shape[1]:
            raise CnnlensError(
                f"layer {chosen.name} has {a.shape[1]} channels; ask for at most that many concepts "
                f"({say('n_concepts', '--concepts')})."
            )

        start = time.perf_counter()
        data_rows = np.concatenate([rows(a), rows(a_crops)])
        fact = factorize(data_rows, int(n_concepts), seed)
        u = fact.coefficients(a)
        u_crop_maps = fact.coefficients(a_crops)
        u_crops = u_crop_maps.mean(axis=(1, 2))
        rebuilt = np.concatenate([u.reshape(-1, u.shape[-1]), u_crop_maps.reshape(-1, u.shape[-1])])
        error = float(
            np.linalg.norm(data_rows - rebuilt @ fact.directions) / max(float(np.linalg.norm(data_rows)), 1e-30)
        )
        seconds["nmf"] += time.perf_counter() - start

        start = time.perf_counter()
        with torch.no_grad():
            rebuilt_logits = cut.tail(fact.reconstruct(u, a), states)
        chosen_rows = _subset(len(x), int(importance_images), seed)
        per_image = np.stack(
            [
                image_importance(cut, fact, u[i], states.take(torch.tensor([i])), [index], a, int(designs), seed)[0]
                for i in progress_bar(chosen_rows, desc="concept importance", unit="image", delay=2.0)
            ]
        )
        seconds["importance"] += time.perf_counter() - start

    order = np.argsort(-per_image.mean(axis=0), kind="stable")
    fact = Factorization(_reordered(fact.nmf, order), fact.norms[order])
    top = np.argsort(-u_crops[:, order], axis=0, kind="stable")[: int(typical)].T
    return Concepts(
        class_index=index,
        class_name=name,
        layer=chosen.name,
        rectified=chosen.rectified,
        directions=fact.directions,
        importance=per_image.mean(axis=0)[order],
        image_importance=per_image[:, order],
        importance_rows=np.asarray(chosen_rows, dtype=np.int64),
        coefficients=u[..., order].astype(np.float32),
        inputs=x.detach().cpu(),
        ids=[ids[i] for i in range(len(x))],
        boxes=boxes,
        crop_coefficients=u_crops[:, order],
        typical=top,
        scores=logits[:, index].double().cpu().numpy(),
        reconstructed_scores=rebuilt_logits[:, index].double().cpu().numpy(),
        agreement=float((rebuilt_logits.argmax(1) == logits.argmax(1)).double().mean()),
        reconstruction_error=error,
        designs=int(designs),
        seed=int(seed),
        seconds=seconds,
        factorization=fact,
        model=model,
    )


def _check_logits(logits: object, index: int) -> None:
    if not isinstance(logits, T) or logits.ndim != 2:
        raise CnnlensError("the model must return (batch, classes) logits for concepts to score a class.")
    if index >= logits.shape[1]:
        raise CnnlensError(f"class index {index} is out of range; the model has {logits.shape[1]} outputs.")


def _subset(n: int, limit: int, seed: int) -> list[int]:
    """The class images importance is computed on: all, or ``limit`` of them drawn under ``seed``."""
    if limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed + 1).choice(n, size=max(1, limit), replace=False).tolist())


def _reordered(nmf: NMF, order: np.ndarray) -> NMF:
    """A copy of a fitted NMF whose components come in ``order``."""
    import copy

    out = copy.copy(nmf)
    out.components_ = nmf.components_[order].copy()
    return out


def cut_for(concepts: Concepts) -> Cut:
    """The model of ``concepts`` cut at its layer."""
    if concepts.model is None:
        raise CnnlensError(NO_MODEL)
    return cut_at(_as_module(concepts.model), concepts.layer)
