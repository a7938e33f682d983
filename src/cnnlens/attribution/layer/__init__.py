"""Layer attribution: how much each unit of a hidden layer contributes to the explained score.

Attributions are shaped like the layer's output. Importing this package registers the methods.
"""

# the import order is the order of the method table
# isort: off
from .simple import LayerActivation, LayerGradient, LayerGradientXActivation, LayerGradCam
from .paths import LayerIntegratedGradients, LayerConductance, InternalInfluence
from .deeplift import LayerDeepLift, LayerDeepLiftShap, LayerGradientShap
from .ablation import LayerFeatureAblation

# isort: on

__all__ = [
    "InternalInfluence",
    "LayerActivation",
    "LayerConductance",
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerFeatureAblation",
    "LayerGradCam",
    "LayerGradient",
    "LayerGradientShap",
    "LayerGradientXActivation",
    "LayerIntegratedGradients",
]
