"""A CNN's global-average-pooling head read from its traced graph (for CAM): which layer's maps are pooled, the
element-wise functions between that layer and the pooling, how it pools, and the one linear layer that turns the
pooled vector into the logits.

Recognised whether written as modules or as functions in the forward code: element-wise activations (``nn.ReLU``,
``F.relu(x, inplace=True)``, ReLU6, SiLU, GELU, Hardswish, ``clamp``, ...), dropout and identities, global average
pooling (``nn.AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)``, ``x.mean([2, 3])``, ``avg_pool2d`` whose
window is the whole map), reshapes (``flatten``, ``view``, ``reshape``, ``squeeze``, ``nn.Flatten``) and one
``nn.Linear`` (or none: maps pooled straight into the logits, one per class, as in SqueezeNet). Anything else on
the way from the layer to the logits means CAM's class weights do not exist, and :func:`gap_head` says why.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from cnnlens.core.errors import CnnlensError
from cnnlens.models._graph import Untraceable
from cnnlens.models._state import state_fingerprint
from cnnlens.models._tracing import trace

T = torch.Tensor

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardtanh, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.SELU,
    nn.CELU, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Mish,
)  # fmt: skip
_IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)  # identities in eval mode
_ELEMENTWISE = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "silu", "sigmoid"}
_ELEMENTWISE |= {"sigmoid_", "tanh", "tanh_", "gelu", "elu", "elu_", "selu", "celu", "softplus", "hardswish"}
_ELEMENTWISE |= {"hardsigmoid", "mish", "clamp", "clamp_", "clip", "clamp_min", "clamp_min_"}
_RESHAPES = {"flatten", "view", "reshape", "squeeze"}
_SIZES = {"size", "dim", "numel", "shape", "ndim", "dtype", "device"}
# model -> {layer or None: (state fingerprint, the head or the error)}; weak keys: never keeps a model alive
_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class GapHead:
    """How a model turns one layer's maps into its logits: ``logits = linear(mean over positions of maps(A))``.

    ``layer``: dotted name of the module whose output ``A`` (its input where ``inputs``) is captured; ``applied``:
    the element-wise functions between that layer and the pooling, in order (CAM is computed on the maps they
    give, the maps that are pooled); ``pooling``: how the model pools, in words; ``window``: for ``avg_pool2d``,
    the map size (h, w) its window covers exactly (other sizes are not a global mean); ``linear``: the one linear
    layer after the pooling (``None``: the pooled maps are the logits, one map per class, the class weights the
    identity, as in SqueezeNet)."""

    layer: str
    inputs: bool
    linear: nn.Linear | None
    pooling: str
    applied: tuple[str, ...] = ()
    window: tuple[int, int] | None = None
    steps: tuple[Callable[[T], T], ...] = ()

    def maps(self, acts: T) -> T:
        """The maps the model pools, ``(B, K, h, w)``, from the captured ``acts`` (the layer's output)."""
        x = acts.clone() if self.steps else acts  # an in-place activation must not change what was captured
        for step in self.steps:
            x = step(x)
        return x


def gap_head(model: nn.Module, layer: str | None = None) -> GapHead:
    """The pooling head of ``model`` as seen from ``layer`` (a dotted name; ``None``: the layer whose output is
    pooled, found by walking back from the logits through the linear layer, reshapes, the pooling and element-wise
    functions to the outermost module that outputs those maps and runs once).

    Raises ``CnnlensError`` with the reason where the logits are not one linear layer applied to the global
    average of the layer's (element-wise activated) maps, and ``Untraceable`` where ``torch.fx`` cannot trace the
    model (the caller may then fall back to module types). The answer is kept while the model lives and its state
    (modules, parameters, buffers, hooks, attributes: ``state_fingerprint``) stays the same."""
    try:
        seen, found = _FOUND.get(model, {}).get(layer, (None, None))
    except TypeError:  # a model that cannot be weakly referenced is never cached
        seen, found = None, None
    fingerprint = state_fingerprint(model)
    if found is None or seen != fingerprint:
        try:
            found = _gap_head(model, layer)
        except (CnnlensError, Untraceable) as err:
            found = err
        with suppress(TypeError):
            _FOUND.setdefault(model, {})[layer] = (fingerprint, found)
    if isinstance(found, Exception):
        raise type(found)(*found.args)
    return found


def _gap_head(model: nn.Module, layer: str | None) -> GapHead:
    graph = trace(model)
    modules = dict(model.named_modules())
    inputs = False
    if layer is None:
        start, name, inputs = _pooled_layer(graph, modules)
    else:
        start, name = _layer_node(graph, layer, modules), layer
    applied, steps, pooling, window, linear = _forward(start, name, inputs, modules)
    return GapHead(name, inputs, linear, pooling, tuple(applied), window, tuple(steps))


# ---- what one node does -----------------------------------------------------------------------------------------
def _name(node: fx.Node) -> str:
    return str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A node in words: ``features.norm5 (BatchNorm2d)``, ``relu(...)``, ``Tensor.mean(...)``."""
    if node.op == "call_module":
        return f"{node.target} ({type(modules[str(node.target)]).__name__})"
    if node.op not in ("call_method", "call_function"):
        return f"{node.op} {node.target}"
    words = f"Tensor.{node.target}(...)" if node.op == "call_method" else f"{_name(node)}(...)"
    inside = [s for s in _scopes(node) if s in modules]
    return f"{words} in {inside[-1]} ({type(modules[inside[-1]]).__name__})" if inside else words


def _arg(node: fx.Node, index: int, key: str, default: object = None) -> object:
    """Argument ``index`` (after the tensor) or keyword ``key`` of a call."""
    args = node.args[1:]
    return args[index - 1] if len(args) >= index else node.kwargs.get(key, default)


def _one(size: object) -> bool:
    return size == 1 or (isinstance(size, (tuple, list)) and len(size) == 2 and all(s == 1 for s in size))


def _pair(v: object) -> tuple[int, int] | None:
    if isinstance(v, int):
        return v, v
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return int(v[0]), int(v[1])
    return None


def _plain_window(kernel: object, padding: object, ceil: object, divisor: object) -> tuple[int, int] | None:
    """The window of an average pooling that is a plain mean over its window (no padding, no divisor)."""
    if _pair(padding) != (0, 0) or divisor is not None:
        return None
    return _pair(kernel)


def _pooling(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, tuple[int, int] | None] | None:
    """``(words, window)`` where the node averages each channel over the whole map, else ``None``."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, nn.AdaptiveAvgPool2d) and _one(m.output_size):
            return f"{node.target} (AdaptiveAvgPool2d to 1 x 1)", None
        if isinstance(m, nn.AvgPool2d):
            window = _plain_window(m.kernel_size, m.padding, m.ceil_mode, m.divisor_override)
            return (f"{node.target} (AvgPool2d, window {window})", window) if window else None
        return None
    if node.op not in ("call_function", "call_method"):
        return None
    name = _name(node)
    if name == "adaptive_avg_pool2d" and _one(_arg(node, 1, "output_size")):
        return "adaptive_avg_pool2d(x, 1) in the forward code", None
    if name == "mean":
        dims = _arg(node, 1, "dim")
        if isinstance(dims, (tuple, list)) and sorted(int(d) % 4 for d in dims) == [2, 3]:
            return f"x.mean({list(dims)}) in the forward code", None
    if name == "avg_pool2d":
        window = _plain_window(
            _arg(node, 1, "kernel_size"), _arg(node, 3, "padding", 0), None, _arg(node, 6, "divisor_override")
        )
        return (f"avg_pool2d (window {window}) in the forward code", window) if window else None
    return None


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """``elementwise``, ``identity``, ``reshape``, ``linear`` or ``pool`` (see :func:`_pooling`), else ``None``."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, _IDENTITIES):
            return "identity"
        if isinstance(m, _ACTIVATIONS) and len(node.all_input_nodes) == 1:
            return "elementwise"
        if isinstance(m, nn.Flatten):
            return "reshape"
        if isinstance(m, nn.Linear):
            return "linear"
    elif node.op in ("call_function", "call_method"):
        name = _name(node)
        if name == "linear" and _linear_module(node, modules) is not None:
            return "linear"
        if name in ("contiguous", "clone"):
            return "identity"
        if name in _ELEMENTWISE and len(node.all_input_nodes) == 1:
            return "elementwise"
        if name in _RESHAPES:
            return "reshape"
    return "pool" if _pooling(node, modules) else None


def _linear_module(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Linear | None:
    """The ``nn.Linear`` (subclass) whose own forward code makes this node (``F.linear`` of its weight and bias,
    e.g. timm's ``Linear``), if it is one."""
    if node.op == "call_module":
        called = modules[str(node.target)]
        return called if isinstance(called, nn.Linear) else None
    inside = [s for s in _scopes(node) if s in modules]
    owner = modules[inside[-1]] if inside else None
    if not isinstance(owner, nn.Linear) or _name(node) != "linear":
        return None
    params = [a.target for a in node.all_input_nodes if a.op == "get_attr"]
    return owner if f"{inside[-1]}.weight" in params else None


def _linear_words(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A linear layer's node in words: its module's name and class."""
    m = _linear_module(node, modules)
    name = next((n for n, v in modules.items() if v is m), str(node.target))
    return f"{name} ({type(m).__name__})"


def _tensor_users(node: fx.Node) -> list[fx.Node]:
    """The users of a node that read its values (not only its size)."""
    return [
        u
        for u in node.users
        if not (u.op == "call_method" and str(u.target) in _SIZES)
        and not (u.op == "call_function" and _name(u) == "getattr" and u.args[1] in _SIZES)
    ]


def _step(node: fx.Node, modules: dict[str, nn.Module]) -> Callable[[T], T]:
    """The element-wise function a node applies, as a function of its one tensor input."""

    def run(x: T) -> T:
        args = fx.node.map_arg(node.args, lambda _n: x)
        kwargs = fx.node.map_arg(node.kwargs, lambda _n: x)
        if node.op == "call_module":
            return modules[str(node.target)](*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        return node.target(*args, **kwargs)  # type: ignore[operator]

    return run


# ---- finding the layer ------------------------------------------------------------------------------------------
def _scopes(node: fx.Node) -> list[str]:
    """The modules a node was traced inside, outermost first (``nn_module_stack``)."""
    stack = node.meta.get("nn_module_stack") or {}
    return [v[0] if isinstance(v, tuple) else str(v) for v in stack.values()]


def _outputs(graph: fx.Graph, name: str) -> list[fx.Node]:
    """The nodes traced inside module ``name`` whose value leaves it (its output, one per call)."""
    inside = {n for n in graph.nodes if name in _scopes(n)}
    return [n for n in inside if any(u not in inside for u in n.users)]


def _owner(node: fx.Node, graph: fx.Graph) -> str | None:
    """The outermost module whose output is ``node`` and that runs once (``None`` where there is none)."""
    for name in _scopes(node):
        if name and _outputs(graph, name) == [node]:
            return name
    return None


def _input(node: fx.Node) -> fx.Node:
    first = node.args[0] if node.args else None
    if not isinstance(first, fx.Node):
        raise Untraceable(f"{node.name} does not take a traced tensor first")
    return first


def _pooled_layer(graph: fx.Graph, modules: dict[str, nn.Module]) -> tuple[fx.Node, str, bool]:
    """(the node of the maps that are pooled, the layer that outputs them, whether it is the pooling's input)."""
    logits = next(n for n in graph.nodes if n.op == "output").args[0]
    if not isinstance(logits, fx.Node):
        raise CnnlensError(f"cam needs a model that returns its logits as one tensor; it returns {type(logits)}")
    walked: list[fx.Node] = []
    node = logits
    while _kind(node, modules) != "pool":
        hidden = _kind(node, modules) == "linear" and any(_kind(n, modules) == "linear" for n in walked)
        if _kind(node, modules) is None or hidden:
            raise CnnlensError(_no_pooling(walked, node, modules))
        walked.append(node)
        node = _input(node)
    pool, node = node, _input(node)
    while True:
        owner = _owner(node, graph)
        if owner is not None:
            return node, owner, False
        if _kind(node, modules) not in ("elementwise", "identity"):
            break
        node = _input(node)
    if pool.op == "call_module":  # the maps are made in the forward code: capture what the pooling module gets
        return _input(pool), str(pool.target), True
    raise CnnlensError(
        f"the maps this model pools are computed by {describe(node, modules)} in its forward code, not output by a "
        "module, so cam cannot capture them; give the layer whose output they come from (layer=...) or use grad_cam"
    )


def _no_pooling(walked: list[fx.Node], node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """Why the logits are not one linear layer on globally average-pooled maps (walking back from the output)."""
    linears = [_linear_words(n, modules) for n in walked if _kind(n, modules) == "linear"]
    if not linears:
        return (
            f"cam needs the logits to come out of an nn.Linear layer applied to globally average-pooled maps; this "
            f"model's output comes from {describe(node, modules)}. Use grad_cam, which "
            "works on any architecture"
        )
    if _kind(node, modules) == "linear":
        return (
            f"this model's head has a hidden layer ({_linear_words(node, modules)} before {linears[0]}): CAM's class "
            "weights exist only where the pooled maps go straight into one linear layer. Use grad_cam"
        )
    return (
        f"before the linear layer {linears[0]} this model applies {describe(node, modules)}, which is not a global "
        "average pooling, a reshape or dropout, so the logits are not class weights times pooled maps and CAM does "
        "not apply. Use grad_cam"
    )


def _layer_node(graph: fx.Graph, layer: str, modules: dict[str, nn.Module]) -> fx.Node:
    """The node whose value is the named layer's output."""
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == layer]
    found = calls or _outputs(graph, layer)
    if len(found) != 1:
        if not found:
            raise Untraceable(f"the traced graph does not show the output of {layer}")
        raise CnnlensError(f"layer {layer} runs {len(found)} times in one forward pass; choose a layer that runs once")
    return found[0]


def _forward(
    node: fx.Node, layer: str, inputs: bool, modules: dict[str, nn.Module]
) -> tuple[list[str], list[Callable[[T], T]], str, tuple[int, int] | None, nn.Linear | None]:
    """Walk from the layer's output to the logits: element-wise functions, one global average pooling, reshapes,
    one linear layer, nothing else; returns what is applied before the pooling, the pooling and the linear layer."""
    applied: list[str] = []
    steps: list[Callable[[T], T]] = []
    pooling: tuple[str, tuple[int, int] | None] | None = None
    linear: nn.Linear | None = None
    linear_name = ""
    what = f"the input of {layer}" if inputs else f"the output of {layer}"
    while True:
        users = _tensor_users(node)
        if len(users) != 1:
            said = ", ".join(describe(u, modules) for u in users) or "nothing"
            raise CnnlensError(
                f"{what} reaches the logits through more than one global pooling: it is read by {said}, so the "
                "logits are not class weights times its pooled maps and CAM does not apply there. Use grad_cam"
            )
        user = users[0]
        if user.op == "output":
            break
        kind, words = _kind(user, modules), describe(user, modules)
        if pooling is None and kind == "elementwise":
            applied.append(words)
            steps.append(_step(user, modules))
        elif pooling is None and kind == "pool":
            pooling = _pooling(user, modules)
        elif pooling is None and kind != "identity":
            raise CnnlensError(
                f"between {layer} and the global average pooling this model applies {words}, which is not an "
                "element-wise function: CAM weights the maps that are pooled. Give that layer (or leave layer "
                "unset to find it), or use grad_cam, which works at any layer"
            )
        elif pooling is not None and linear is None and kind == "linear":
            linear, linear_name = _linear_module(user, modules), _linear_words(user, modules)
        elif pooling is not None and kind not in ("identity", "reshape"):
            where = "the global average pooling" if linear is None else f"the linear layer {linear_name}"
            raise CnnlensError(
                f"after {where} this model applies {words}"
                + (" (a hidden layer: the head is not one linear layer)" if linear is not None else "")
                + ", so the logits are not class weights times the pooled maps and CAM does not apply. Use grad_cam"
            )
        node = user
    if pooling is None:
        raise CnnlensError(
            f"from {what} to the logits this model has no global average pooling, so it has no CAM class weights. "
            "Use grad_cam"
        )
    return applied, steps, pooling[0], pooling[1], linear
