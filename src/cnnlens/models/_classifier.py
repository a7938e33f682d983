"""`Preprocessing` (images -> normalized tensors) and `Classifier` (a module plus its metadata)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from cnnlens.core.errors import CnnlensError, CnnlensWarning, say
from cnnlens.core.model_guard import frozen, model_device
from cnnlens.data import load_image
from cnnlens.models._heads import class_count, class_probabilities

ImageLike = str | os.PathLike | Image.Image | np.ndarray
Images = ImageLike | list[ImageLike] | tuple[ImageLike, ...]

RANGE_TOLERANCE = 1.0
"""How far (in pixel units, where an image spans [0, 1]) an input may go outside the range any image reaches
after the normalisation before `InputRangeWarning` says so: wide enough for noise and augmentation, narrow enough
for an ImageNet-normalised tensor normalised again (its dark pixels land 2.1 below 0)."""

_RANGE_CHECK: ContextVar[bool] = ContextVar("cnnlens_range_check", default=True)


class InputRangeWarning(CnnlensWarning):
    """Inputs outside the range any image can reach after the model's normalisation (e.g. normalised twice)."""


@contextmanager
def inputs_checked() -> Iterator[None]:
    """Inside the block, inputs are not range-checked: they are rows cnnlens made from inputs checked already
    (e.g. a metric's perturbed copies)."""
    token = _RANGE_CHECK.set(False)
    try:
        yield
    finally:
        _RANGE_CHECK.reset(token)


_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except TypeError:
        out = (float(value),) * 3
    except ValueError as e:
        raise CnnlensError(f"{what} must be 3 numbers (one per RGB channel); got {value!r}.") from e
    if len(out) != 3:
        raise CnnlensError(f"{what} must have 3 values (one per RGB channel); got {value!r}.")
    return out


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input: resize, center crop, scale to [0, 1], normalize."""

    input_size: tuple[int, int]
    """``(height, width)``; an int ``s`` means ``(s, s)``."""
    resize: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        given: Any = self.input_size
        size = (int(given), int(given)) if isinstance(given, (int, np.integer)) else tuple(int(s) for s in given)
        if len(size) != 2 or min(size) < 1:
            raise CnnlensError(f"input_size must be (height, width) with positive values; got {self.input_size}.")
        object.__setattr__(self, "input_size", size)
        if self.resize is not None:
            if int(self.resize) < max(size):
                raise CnnlensError(
                    f"{say('resize', '--resize')} ({self.resize}) must be >= the largest side of "
                    f"{say('input_size', '--input-size')} {size} so that the center crop fits; or "
                    + say("use resize=None to resize straight to input_size.", "leave out --resize.")
                )
            object.__setattr__(self, "resize", int(self.resize))
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        std = _triple(self.std, "std")
        if min(std) <= 0:
            raise CnnlensError(f"std values must be positive; got {std}.")
        object.__setattr__(self, "std", std)
        if self.interpolation not in _RESAMPLING:
            raise CnnlensError(f"Unknown interpolation {self.interpolation!r}; use one of {', '.join(_RESAMPLING)}.")

    # -- images -> tensor ------------------------------------------------------------------
    def __call__(self, images: Images) -> torch.Tensor:
        """Return a (B, 3, H, W) float32 normalized tensor for one image or a list of images."""
        if isinstance(images, torch.Tensor):
            raise CnnlensError(
                "Preprocessing takes images (paths, PIL images or arrays), not tensors. "
                "A tensor that is already preprocessed can be passed to the model directly."
            )
        if isinstance(images, np.ndarray) and images.ndim == 4:
            items: Sequence[ImageLike] = list(images)
        elif isinstance(images, (list, tuple)):
            items = images
        else:
            items = [images]
        if len(items) == 0:
            raise CnnlensError("No images given; pass at least one image.")
        batch = [self._one(load_image(item)) for item in items]
        return self.normalize(torch.stack(batch))

    def _one(self, im: Image.Image) -> torch.Tensor:
        h, w = self.input_size
        resample = _RESAMPLING[self.interpolation]
        if self.resize is None:
            im = im.resize((w, h), resample)
        else:
            iw, ih = im.size
            short, long = (iw, ih) if iw <= ih else (ih, iw)
            new_long = int(self.resize * long / short)
            size = (self.resize, new_long) if iw <= ih else (new_long, self.resize)
            if size != im.size:
                im = im.resize(size, resample)
            iw, ih = im.size
            top = int(round((ih - h) / 2.0))
            left = int(round((iw - w) / 2.0))
            im = im.crop((left, top, left + w, top + h))
        arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    # -- pixel space <-> normalized space --------------------------------------------------
    def _stats(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if t.ndim not in (3, 4) or t.shape[-3] != 3:
            raise CnnlensError(f"Expected a (B, 3, H, W) or (3, H, W) tensor; got shape {tuple(t.shape)}.")
        dtype = t.dtype if t.is_floating_point() else torch.float32
        mean = torch.tensor(self.mean, dtype=dtype, device=t.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=dtype, device=t.device).view(3, 1, 1)
        return mean, std

    def normalize(self, t: torch.Tensor) -> torch.Tensor:
        """Map a tensor of pixel values in [0, 1] to the model's input space."""
        mean, std = self._stats(t)
        return (t - mean) / std

    def denormalize(self, t: torch.Tensor) -> torch.Tensor:
        """Map model input back to pixel values (in [0, 1] for real images)."""
        mean, std = self._stats(t)
        return t * std + mean

    def pixel_value(self, rgb: Sequence[float] | float) -> torch.Tensor:
        """Normalized (3,) value of a colour given as RGB in [0, 1], e.g. black = (0, 0, 0)."""
        colour = _triple(rgb, "rgb")
        if min(colour) < 0 or max(colour) > 1:
            raise CnnlensError(f"Colour values must be in [0, 1]; got {colour}. Divide 0..255 values by 255.")
        c = torch.tensor(colour, dtype=torch.float32)
        return (c - torch.tensor(self.mean)) / torch.tensor(self.std)

    def check_range(self, t: torch.Tensor, tolerance: float = RANGE_TOLERANCE) -> None:
        """Warn (`InputRangeWarning`) when a preprocessed ``(B, 3, H, W)`` tensor has values farther than
        ``tolerance`` (pixel units) outside ``[(0 - mean) / std, (1 - mean) / std]``, the range of any image after
        this normalisation: the usual cause is a tensor normalised twice (or 0..255 values)."""
        if not _RANGE_CHECK.get() or t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point() or t.numel() == 0:
            return
        pixels = self.denormalize(t.detach())
        below, above = float(-pixels.amin()), float(pixels.amax() - 1)
        if max(below, above) <= tolerance:
            return
        low = tuple(round((0 - m) / s, 2) for m, s in zip(self.mean, self.std, strict=True))
        high = tuple(round((1 - m) / s, 2) for m, s in zip(self.mean, self.std, strict=True))
        lo, hi = float(t.amin()), float(t.amax())
        warnings.warn(
            f"the inputs look normalised twice (or hold unscaled 0..255 values): their values span [{lo:.3g}, {hi:.3g}], outside [(0 - mean) / std, "
            f"(1 - mean) / std] = [{low}, {high}] (per channel), the range of any image after the model's "
            f"normalisation (mean={self.mean}, std={self.std}), by {max(below, above):.3g} in pixel units. Pass the "
            "images themselves (paths, PIL images, arrays) or classifier.preprocess(images), which normalises once; "
            "a tensor given to cnnlens must be normalised exactly once",
            InputRangeWarning,
            stacklevel=2,
        )

    def to_pixels(self, t: torch.Tensor) -> np.ndarray:
        """(B, H, W, 3) float NumPy array in [0, 1] for display (a (3, H, W) input gives B = 1)."""
        if t.ndim == 3:
            t = t.unsqueeze(0)
        pix = self.denormalize(t.detach().float().cpu()).clamp(0.0, 1.0)
        return pix.permute(0, 2, 3, 1).numpy()


class Classifier:
    """An image classifier: a module, how to preprocess its input and the names of its classes."""

    def __init__(
        self,
        module: nn.Module,
        preprocessing: Preprocessing | None = None,
        class_names: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise CnnlensError(f"Classifier needs a torch.nn.Module; got {type(module).__name__}.")
        self.module = module
        self.preprocessing = preprocessing
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.name = name or type(module).__name__
        self._num_classes: int | None = None
        self.info: dict[str, object] = {}
        """What the loader knows about how the model was made (the digits model: its training, its cache)."""

    def __repr__(self) -> str:
        n = len(self.class_names) if self.class_names is not None else "?"
        return f"Classifier(name={self.name!r}, classes={n}, preprocessing={self.preprocessing})"

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter (or buffer); CPU if it has neither."""
        return model_device(self.module) or torch.device("cpu")

    def to(self, device: str | torch.device) -> Classifier:
        """Move the module to ``device``; returns self."""
        self.module.to(device)
        return self

    @property
    def num_classes(self) -> int:
        """Number of classes (from the class names, else from a forward pass or the last Linear layer); a model
        with one output logit has two classes (0: the logit negated, 1: the logit)."""
        if self.class_names is not None:
            return len(self.class_names)
        if self._num_classes is None:
            self._num_classes = self._infer_num_classes()
        return self._num_classes

    def _infer_num_classes(self) -> int:
        if self.preprocessing is not None:
            x = torch.zeros((1, 3, *self.preprocessing.input_size), device=self.device)
            with frozen(self.module), torch.no_grad():
                out = self.module(x)
            if isinstance(out, torch.Tensor) and out.ndim == 2:
                return class_count(out.shape[1])
        linears = [m for m in self.module.modules() if isinstance(m, nn.Linear)]
        if linears:
            return class_count(linears[-1].out_features)
        raise CnnlensError(
            "Cannot tell how many classes this model has; "
            + say("pass class_names= or num_classes= to load_model.", "give --classes.")
        )

    def class_name(self, i: int) -> str:
        """Name of class ``i``, or ``str(i)`` if there are no names."""
        i = int(i)
        if self.class_names is not None and 0 <= i < len(self.class_names):
            return self.class_names[i]
        return str(i)

    def preprocess(self, images: Images) -> torch.Tensor:
        """Turn images into a (B, 3, H, W) input tensor on the model's device."""
        if self.preprocessing is None:
            raise CnnlensError(
                f"Model {self.name!r} has no preprocessing, so it cannot take images. Pass "
                "preprocessing=Preprocessing(...) (or a dict of its fields) to load_model, "
                "or give it an already preprocessed tensor."
            )
        return self.preprocessing(images).to(self.device)

    def __call__(self, x: torch.Tensor) -> Any:
        """Run the module on ``x``."""
        return self.module(x)

    def check_logits(self, logits: object) -> torch.Tensor:
        """``logits`` if they are a (batch, classes) tensor with one class per class name, else a clear error."""
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise CnnlensError(f"the model must return (batch, classes) logits; it returned {shape}.")
        if self.class_names is not None and class_count(logits.shape[1]) != len(self.class_names):
            binary = " (one logit: two classes, the logit negated and the logit, e.g. ['negative', 'positive'])"
            raise CnnlensError(
                f"The model returns {logits.shape[1]} scores but has {len(self.class_names)} class names"
                f"{binary if logits.shape[1] == 1 else ''}; "
                + say("pass class_names matching the model's outputs.", "give --classes with one name per output.")
            )
        return logits

    def predict(self, images: Images | torch.Tensor, top_k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-k ``(class_index, class_name, probability)`` for each image (or each row of a tensor); a one-logit
        model ``z`` has the classes 0 (probability ``sigmoid(-z)``) and 1 (``sigmoid(z)``).

        The module runs in eval mode; its training flags are restored afterwards (also on error)."""
        if int(top_k) < 1:
            raise CnnlensError(f"top_k must be at least 1; got {top_k}.")
        if isinstance(images, torch.Tensor):
            if images.ndim not in (3, 4) or not images.is_floating_point():
                raise CnnlensError(
                    f"predict takes a preprocessed (B, C, H, W) or (C, H, W) float tensor, or images; got a "
                    f"{images.dtype} tensor of shape {tuple(images.shape)}. Use model.preprocess(images) first."
                )
            x = images.unsqueeze(0) if images.ndim == 3 else images
            x = x.to(self.device)
            if self.preprocessing is not None:
                self.preprocessing.check_range(x)
        else:
            x = self.preprocess(images)
        with frozen(self.module), torch.no_grad():
            logits = self.module(x)
        probs = class_probabilities(self.check_logits(logits).float())
        values, indices = probs.topk(min(int(top_k), probs.shape[1]), dim=1)
        return [
            [(int(i), self.class_name(int(i)), float(p)) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
