"""Loading image classifiers (bundled, TorchScript, state dict) and finding their layers."""

from cnnlens.models._bundled import bundled_models
from cnnlens.models._classifier import Classifier, Preprocessing
from cnnlens.models._digits import DigitsCNN, digits_cnn
from cnnlens.models._layers import get_layer, last_conv_layer, layer_names
from cnnlens.models._loading import load_model
from cnnlens.models._outputs import SelectOutput

__all__ = [
    "Classifier",
    "DigitsCNN",
    "Preprocessing",
    "SelectOutput",
    "bundled_models",
    "digits_cnn",
    "get_layer",
    "last_conv_layer",
    "layer_names",
    "load_model",
]
