"""The engine every method and metric runs on: a :class:`Context` (what is explained, batched and counted model
calls, backward passes, the run seen from a layer) and what it is made of. Methods live in
:mod:`cnnlens.attribution`, metrics in :mod:`cnnlens.quality`; both import the engine, never each other's
internals. ``__all__`` is what a method's author uses; the names imported as themselves ("x as x") are what
other cnnlens packages use."""

from ..models import class_probabilities as class_probabilities  # quality reads the classes through the engine
from ..models import class_scores as class_scores
from ._backward import Backward
from ._batching import Rows
from ._context import Context, sum_per_row
from ._explained import Target
from ._explained import check_logits as check_logits
from ._memory import auto_batch_size as auto_batch_size
from ._modes import Objective, ReferencePass
from ._neuron import NEURON, Neuron, NeuronSpec

__all__ = [
    "NEURON",
    "Backward",
    "Context",
    "Neuron",
    "NeuronSpec",
    "Objective",
    "ReferencePass",
    "Rows",
    "Target",
    "sum_per_row",
]
