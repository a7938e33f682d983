"""The engine every method and metric runs on: a :class:`Context` (what is explained, batched and counted model
calls, backward passes, the run seen from a layer) and what it is made of. Methods live in
:mod:`cnnlens.attribution`, metrics in :mod:`cnnlens.quality`; both import the engine, never each other's
internals."""

from ._backward import Backward
from ._context import Context, Rows, Target, sum_per_row
from ._memory import auto_batch_size, is_out_of_memory
from ._neuron import NEURON, Neuron, NeuronSpec

__all__ = [
    "NEURON",
    "Backward",
    "Context",
    "Neuron",
    "NeuronSpec",
    "Rows",
    "Target",
    "auto_batch_size",
    "is_out_of_memory",
    "sum_per_row",
]
