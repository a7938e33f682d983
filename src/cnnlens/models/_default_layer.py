"""The default layer of CAM and layer methods: the last spatial layer the explained score depends on entirely.

**Rule.** A *spatial layer* is a module, called once in the forward pass, that is or contains an ``nn.Conv2d``
and outputs one tensor of shape ``(B, C, H, W)`` with ``H x W > 1`` (on the probe input). The default layer is the
spatial layer whose output every path from the input to the logits passes through (a dominator of the output in
the graph traced by ``torch.fx``; sizes read from a tensor are not a path) and that comes last; where several
modules output that same tensor (a block, its last activation, the ``Sequential`` holding it), the outermost one
is named (ResNet ``layer4``, not ``layer4.1`` or ``layer4.1.relu``; torchvision VGG, DenseNet, ConvNeXt,
EfficientNet and MobileNet ``features``, whose output is their last stage's). Normalisation, activation and
pooling modules are not spatial layers on their own: where the last convolution's BatchNorm and activation are
not inside a module with it (EfficientNet-Lite0: ``_conv_head``, then ``_bn1`` and ReLU6 called by the root), the
convolution is named. A layer inside one branch of a block, in a dead branch or in a side head is never chosen:
the score does not depend on it alone.

Where no spatial layer dominates the output, or token layers ``(B, T, C)`` follow the last one (a vision
transformer, whose last spatial layer is its patch embedding), there is no default and the error says why.
A model that ``torch.fx`` cannot trace (data-dependent control flow, TorchScript, hooks) falls back to the last
``nn.Conv2d`` that ran with an output larger than 1 x 1, and says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.core.hooks import module_calls
from cnnlens.core.model_guard import frozen
from cnnlens.models._graph import Untraceable, dominators
from cnnlens.models._tracing import trace_calls

RULE = "the last spatial layer every path to the score passes through"


@dataclass(frozen=True)
class DefaultLayer:
    """The default layer's dotted ``name``, ``why`` it was chosen (a sentence), and whether the rule was checked
    on the traced graph (``traced``; ``False``: the model could not be traced, the last convolution was taken)."""

    name: str
    why: str
    traced: bool


def find_default_layer(
    root: nn.Module, input_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> DefaultLayer:
    """The default layer of ``root`` for inputs of ``input_shape`` (one pass on zeros; the caller counts it).

    Raises ``CnnlensError`` where there is none (the message lists the candidates), or where the model fails on
    zeros of ``input_shape`` (chained to the model's error)."""
    try:
        graph, calls = trace_calls(root)
        shapes = _shapes(root, calls, input_shape, device, dtype)
    except Untraceable as err:
        name = probe_last_conv(root, input_shape, device, dtype)
        why = (
            f"{err}, so whether every path to the score passes through a layer could not be checked: the default "
            f"is the last nn.Conv2d that ran with an output larger than 1 x 1, which may lie inside one branch of "
            f"a block; pass layer= to choose"
        )
        return DefaultLayer(name, why, False)
    return _choose(root, graph, calls, shapes)


def _choose(
    root: nn.Module, graph: fx.Graph, calls: list[tuple[str, fx.Node | None]], shapes: dict[fx.Node, tuple]
) -> DefaultLayer:
    pos = {n: i for i, n in enumerate(graph.nodes)}
    doms = set(dominators(graph, dict(root.named_modules())))
    layers = _layers_by_node(root, calls, shapes)
    spatial = sorted(layers, key=pos.__getitem__)
    best = [n for n in spatial if n in doms]
    last = best[-1] if best else None
    tokens = [
        n
        for _, n in calls
        if n is not None and n in doms and len(shapes.get(n, ())) == 3 and (last is None or pos[n] > pos[last])
    ]
    if tokens:
        raise CnnlensError(_tokens_message(root, calls, tokens, layers.get(last) if last is not None else None))
    if last is None:
        raise CnnlensError(_none_message(spatial, layers))
    name = layers[last]
    why = (
        f"{name!r} is {RULE} (output {tuple(shapes[last])[1:]} per image, the outermost module with that output; "
        f"checked on the model's traced graph)"
    )
    return DefaultLayer(name, why, True)


def _layers_by_node(
    root: nn.Module, calls: list[tuple[str, fx.Node | None]], shapes: dict[fx.Node, tuple]
) -> dict[fx.Node, str]:
    """Each spatial layer's output node and the outermost spatial layer (a module called once) with that output."""
    count = Counter(name for name, _ in calls)
    modules = dict(root.named_modules())
    out: dict[fx.Node, str] = {}
    for name, node in calls:
        if node is None or count[name] != 1 or not _is_spatial(shapes.get(node)):
            continue
        if not any(isinstance(m, nn.Conv2d) for m in modules[name].modules()):
            continue
        if node not in out or name.count(".") <= out[node].count("."):
            out[node] = name
    return out


def _is_spatial(shape: tuple | None) -> bool:
    return shape is not None and len(shape) == 4 and shape[-2] * shape[-1] > 1


def _shapes(
    root: nn.Module,
    calls: list[tuple[str, fx.Node | None]],
    input_shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
) -> dict[fx.Node, tuple]:
    """The output shape of each traced module call, from one run of the model itself on zeros; the k-th traced
    call of a module gets the shape of its k-th call in the run (a module called a different number of times in
    the run than in the trace gets none, and is no candidate)."""
    named = [(n, m) for n, m in root.named_modules() if n]
    try:
        with module_calls(named, keep=_shape) as ran, frozen(root), torch.no_grad():
            root(torch.zeros(input_shape, device=device, dtype=dtype))
    except Exception as err:  # noqa: BLE001 - then the model is probed as it is (which reports its own error)
        raise Untraceable(f"the model failed on zeros ({type(err).__name__})") from None
    runs: dict[str, list] = {}
    for c in ran:
        runs.setdefault(c.name, []).append(c.output)
    traced: dict[str, list] = {}
    for name, node in calls:
        traced.setdefault(name, []).append(node)
    return {
        node: shape
        for name, nodes in traced.items()
        if len(runs.get(name, ())) == len(nodes)
        for node, shape in zip(nodes, runs[name], strict=True)
        if node is not None and shape is not None
    }


def _shape(output: object) -> tuple | None:
    return tuple(output.shape) if isinstance(output, torch.Tensor) else None


def _tokens_message(
    root: nn.Module, calls: list[tuple[str, fx.Node | None]], tokens: list[fx.Node], spatial: str | None
) -> str:
    seen = set(tokens)
    names = [name for name, node in calls if node in seen]
    outer = sorted(dict.fromkeys(names), key=lambda s: s.count("."))[:3]
    where = f"after {spatial!r} (its patch embedding)" if spatial is not None else "and no spatial layer before them"
    return (
        f"{type(root).__name__} computes its score from tokens, layers with (B, T, C) outputs ({', '.join(outer)}), "
        f"{where}: it looks like a vision transformer. CAM and layer methods need a (B, C, H, W) feature map the "
        f"score depends on entirely, and a map at the patch embedding would show nothing of what the later layers "
        f"do; methods for transformer tokens are not supported yet. Explain this model with an input-space method "
        f"(saliency, integrated_gradients, occlusion, kernel_shap, rise)"
    )


def _none_message(spatial: list[fx.Node], layers: dict[fx.Node, str]) -> str:
    if not spatial:
        return (
            "no module containing an nn.Conv2d output a (B, C, H, W) map larger than 1 x 1, so there is no "
            "spatial layer to default to (the input may be too small for the model)"
        )
    names = [layers[n] for n in spatial][-8:]
    return (
        f"no spatial layer is one that every path to the score passes through: the last spatial layers "
        f"({', '.join(names)}) each lie in one of several parallel branches, so the score does not depend on any "
        f"of them alone; choose one or several of them (CAM methods average several layers' maps)"
    )


def probe_last_conv(root: nn.Module, input_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> str:
    """The last ``nn.Conv2d`` with an output larger than 1 x 1 in one run of ``root`` on zeros (not cached)."""
    convs = [(name, m) for name, m in root.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise CnnlensError(
            f"{type(root).__name__} has no nn.Conv2d layers (TorchScript models cannot be searched); "
            "pass the layer name yourself."
        )
    try:
        with module_calls(convs, keep=_spatial) as calls, frozen(root), torch.no_grad():
            root(torch.zeros(input_shape, device=device, dtype=dtype))
    except Exception as e:
        raise CnnlensError(
            f"Running the model on a zero input of shape {tuple(input_shape)} failed "
            f"({type(e).__name__}: {e}); "
            "pass input_shape= matching what the model expects."
        ) from e
    executed = [c.name for c in calls if c.output]
    if not executed:
        raise CnnlensError(
            "No nn.Conv2d layer with a spatial output larger than 1x1 ran during the forward pass; "
            "pass the layer name yourself."
        )
    return executed[-1]


def _spatial(output: object) -> bool:
    """Whether a convolution's output is a (B, C, H, W) map larger than 1 x 1."""
    return isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2] * output.shape[-1] > 1
