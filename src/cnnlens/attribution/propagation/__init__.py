"""Relevance propagation (LRP and its relatives). Importing this package registers the methods.

Rules (``rules``) say how a layer's output relevance goes to its inputs; composites (``composites``) say which
rule each layer gets; the methods differ in where relevance starts.
"""

from ._checks import DegenerateRelevanceWarning
from .composites import Composite, composites, register_composite
from .methods import Clrp, LayerLrp, Lrp, Sglrp
from .rules import RULES, AlphaBeta, Epsilon, Flat, Gamma, Pass, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "RULES",
    "AlphaBeta",
    "Clrp",
    "Composite",
    "DegenerateRelevanceWarning",
    "Epsilon",
    "Flat",
    "Gamma",
    "LayerLrp",
    "Lrp",
    "Pass",
    "Rule",
    "Sglrp",
    "WSquare",
    "ZBox",
    "ZPlus",
    "composites",
    "register_composite",
]
