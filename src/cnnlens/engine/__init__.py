"""The engine every method and metric runs on: a :class:`Context` (what is explained, batched and counted model
calls, backward passes, the run seen from a layer) and what it is made of. Methods live in
:mod:`cnnlens.attribution`, metrics in :mod:`cnnlens.quality`; both import the engine, never each other's
internals."""

from ._backward import Backward
from ._batching import Batching, Rows, Shared
from ._context import Context, sum_per_row
from ._explained import Explained, Target, check_logits
from ._memory import auto_batch_size, is_out_of_memory
from ._modes import Objective, ReferencePass
from ._neuron import NEURON, Neuron, NeuronSpec

__all__ = [
    "NEURON",
    "Backward",
    "Batching",
    "Context",
    "Explained",
    "Neuron",
    "NeuronSpec",
    "Objective",
    "ReferencePass",
    "Rows",
    "Shared",
    "Target",
    "auto_batch_size",
    "check_logits",
    "is_out_of_memory",
    "sum_per_row",
]
