"""Gradient methods. Importing this package registers them; the classes are usable directly too."""

from .deeplift import DeepLift, DeepLiftShap
from .gradient_shap import GradientShap
from .integrated_gradients import IntegratedGradients
from .simple import Deconvnet, GuidedBackprop, InputXGradient, Saliency

__all__ = [
    "DeepLift",
    "DeepLiftShap",
    "Deconvnet",
    "GradientShap",
    "GuidedBackprop",
    "InputXGradient",
    "IntegratedGradients",
    "Saliency",
]
