"""Neuron attribution: which input values drive one unit of a hidden layer.

Attributions are shaped like the inputs. Importing this package registers the methods.
"""

from .conductance import NeuronConductance
from .methods import (
    NeuronDeconvnet,
    NeuronDeepLift,
    NeuronDeepLiftShap,
    NeuronFeatureAblation,
    NeuronGradient,
    NeuronGradientShap,
    NeuronGuidedBackprop,
    NeuronIntegratedGradients,
)

__all__ = [
    "NeuronConductance",
    "NeuronDeconvnet",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronFeatureAblation",
    "NeuronGradient",
    "NeuronGradientShap",
    "NeuronGuidedBackprop",
    "NeuronIntegratedGradients",
]
