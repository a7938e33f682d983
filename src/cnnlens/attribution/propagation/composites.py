"""Composites: which rule each convolution and fully connected layer gets, written as data.

A composite maps keys to rules (a rule name from ``rules.RULES`` or a ``Rule`` object). Keys, most specific
first: a layer's dotted name (``"_blocks.0._project_conv"``), ``"first"`` (the first convolution or fully
connected layer to run, whatever its name: the layer that sees the pixels), a module type (``nn.Conv2d``, any
subclass matches), and the kinds ``"conv"`` and ``"linear"``. ``"first"`` is the layer the input enters: the
z^B bounds (``bounds=`` or a Classifier's normalization) are the input's, so ``layer_lrp``, whose relevance pass
starts at a hidden layer and never reaches it, gives every layer its kind's rule; a z^B rule without bounds of
its own at any other layer is refused.

Everything else has one fixed rule, the same in every composite: sums (``+``, ``torch.add``, ``sum``, ``mean``,
average pooling) split relevance in proportion to the summands, max pooling gives it to the winner, element-wise
activations (ReLU, GELU, SiLU, Hardswish, sigmoid...) and BatchNorm pass it on, reshaping and concatenation route
it; a feature map times a gate (a sigmoid's or hardsigmoid's output, squeeze-and-excitation) gets all the
relevance, the gate held as a weight; LayerNorm / GroupNorm / LayerNorm2d share it as the linear map
``(x - mean) / std * w + b`` with ``std`` held constant (Ali et al. 2022; Achtibat et al. 2024).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from ...core.errors import CnnlensError, unknown_name
from .rules import RULES, Rule

Key = str | type
KINDS = ("first", "conv", "linear")
_COMPOSITES: dict[str, dict[Key, str | Rule]] = {
    "epsilon_plus_flat": {"first": "flat", "conv": "zplus", "linear": "epsilon"},
    "epsilon_gamma_box": {"first": "zbox", "conv": "gamma", "linear": "epsilon"},
    "epsilon_alpha2_beta1": {"conv": "alpha2_beta1", "linear": "epsilon"},
    "epsilon_plus": {"conv": "zplus", "linear": "epsilon"},
    "epsilon": {"conv": "epsilon", "linear": "epsilon"},
}


@dataclass(frozen=True)
class Composite:
    """A named mapping from layer keys to rules (see the module docstring for the keys)."""

    name: str
    rules: tuple[tuple[Key, str | Rule], ...]

    @classmethod
    def of(cls, spec: Composite | str | Mapping[Key, str | Rule]) -> Composite:
        """A registered composite by name, or a mapping checked key by key."""
        if isinstance(spec, Composite):
            return spec
        if isinstance(spec, str):
            if spec not in _COMPOSITES:
                raise unknown_name("composite", spec, _COMPOSITES)
            return cls(spec, tuple(_COMPOSITES[spec].items()))
        if not isinstance(spec, Mapping) or not spec:
            raise CnnlensError(
                f"composite must be a name ({', '.join(_COMPOSITES)}) or a non-empty mapping from layer kind "
                f"('first', 'conv', 'linear'), module type or layer name to a rule; got {spec!r}"
            )
        for key, rule in spec.items():
            _check_key(key)
            _check_rule(key, rule)
        return cls("custom", tuple(spec.items()))

    def rule_for(self, name: str, module: nn.Module | None, kind: str, first: bool) -> str | Rule:
        """The rule of one layer call: by its name, then ``"first"``, then its module's type, then its kind."""
        table = dict(self.rules)
        if name in table:
            return table[name]
        if first and "first" in table:
            return table["first"]
        for key, rule in self.rules:
            if isinstance(key, type) and isinstance(module, key):
                return rule
        if kind in table:
            return table[kind]
        what = "convolution" if kind == "conv" else "fully connected layer"
        raise CnnlensError(
            f"composite {self.name} has no rule for the {what} {name}; add one for {kind!r}, for its module type "
            f"or for its name, e.g. {{{kind!r}: 'epsilon', ...}}"
        )

    def layer_names(self) -> list[str]:
        return [k for k, _ in self.rules if isinstance(k, str) and k not in KINDS]

    def uses(self, rule_name: str) -> bool:
        return any((r if isinstance(r, str) else r.name) == rule_name for _, r in self.rules)


def _check_key(key: object) -> None:
    if isinstance(key, type) and issubclass(key, nn.Module):
        return
    if isinstance(key, str) and key:
        return
    raise CnnlensError(
        f"a composite key must be 'first', 'conv', 'linear', a layer name or an nn.Module type; got {key!r}"
    )


def _check_rule(key: object, rule: object) -> None:
    if isinstance(rule, Rule):
        return
    if isinstance(rule, str):
        if rule not in RULES:
            raise unknown_name("rule", rule, RULES)
        return
    raise CnnlensError(f"the rule for {key!r} must be a rule name ({', '.join(RULES)}) or a Rule; got {rule!r}")


def register_composite(name: str, rules: Mapping[Key, str | Rule]) -> None:
    """Make ``rules`` (a composite mapping) available by ``name`` (``composite=name``); a name is taken once."""
    if not isinstance(name, str) or not name.isidentifier():
        raise CnnlensError(f"a composite name must be an identifier such as 'my_rules'; got {name!r}")
    if name in _COMPOSITES:
        raise CnnlensError(f"a composite named {name!r} is already registered; choose another name")
    _COMPOSITES[name] = dict(Composite.of(dict(rules)).rules)


def composites() -> dict[str, dict[Key, str | Rule]]:
    """Every registered composite: name -> its mapping (copies)."""
    return {name: dict(rules) for name, rules in _COMPOSITES.items()}
