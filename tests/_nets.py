"""Small deterministic CNNs shared by the attribution reference tests.

``residual_cnn(kind)`` builds the same network (same parameter names, same weights, same BatchNorm running
statistics) whatever way it writes its ReLUs:

* ``"module"``: a distinct, non-inplace ``nn.ReLU`` module per use (the setting where Captum is correct);
* ``"inplace"``: distinct ``nn.ReLU(inplace=True)`` modules;
* ``"reused"``: one ``nn.ReLU`` module called everywhere;
* ``"functional"``: ``F.relu`` calls;
* ``"mixed"``: ``torch.relu``, ``Tensor.relu_``, ``clamp(min=0)``, ``F.relu(inplace=True)``, ``Tensor.relu``.

So any attribution method must give the same result for all five. ``act_net(name)`` is a small conv net
with one activation type (ReLU6, LeakyReLU, SiLU, GELU, Hardswish, Sigmoid, Tanh, ...); ``maxpool_net()``
uses overlapping, padded max pooling.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

T = torch.Tensor
RELU_KINDS = ("module", "inplace", "reused", "functional", "mixed")
N_RELU = 6


def init_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic weights and non-trivial BatchNorm statistics, by parameter name; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in sorted(net.named_modules(), key=lambda nm: nm[0]):
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
            del name
    return net.eval()


def inputs(b: int = 3, c: int = 3, h: int = 8, w: int = 8, seed: int = 1, scale: float = 1.0) -> T:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed)) * scale


class ResidualCNN(nn.Module):
    """conv-BN-ReLU stem, two residual blocks (ReLU after the addition), avg pooling, conv-ReLU, linear."""

    def __init__(self, kind: str = "module", num_classes: int = 5) -> None:
        super().__init__()
        if kind not in RELU_KINDS:
            raise ValueError(kind)
        self.kind = kind
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(6)
        self.b1c1, self.b1n1 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.b1c2, self.b1n2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.b2c1, self.b2n1 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.b2c2, self.b2n2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Conv2d(6, 8, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)
        if kind == "module":
            self.relus = nn.ModuleList(nn.ReLU() for _ in range(N_RELU))
        elif kind == "inplace":
            self.relus = nn.ModuleList(nn.ReLU(inplace=True) for _ in range(N_RELU))
        elif kind == "reused":
            self.relu = nn.ReLU()

    def act(self, i: int, x: T) -> T:
        if self.kind in ("module", "inplace"):
            return self.relus[i](x)
        if self.kind == "reused":
            return self.relu(x)
        if self.kind == "functional":
            return F.relu(x)
        mixed: list[Callable[[T], T]] = [
            torch.relu,
            lambda t: t.relu_(),
            lambda t: t.clamp(min=0),
            lambda t: F.relu(t, inplace=True),
            lambda t: t.relu(),
            lambda t: torch.clamp(t, min=0.0),
        ]
        return mixed[i](x)

    def forward(self, x: T) -> T:
        x = self.act(0, self.bn0(self.stem(x)))
        y = self.act(1, self.b1n1(self.b1c1(x)))
        x = self.act(2, self.b1n2(self.b1c2(y)) + x)
        y = self.act(3, self.b2n1(self.b2c1(x)))
        x = self.act(4, self.b2n2(self.b2c2(y)) + x)
        x = self.act(5, self.head(self.pool(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def residual_cnn(kind: str = "module") -> ResidualCNN:
    """The residual ReLU CNN; every ``kind`` has identical weights (they are drawn by parameter name)."""
    return init_(ResidualCNN(kind))


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "hardswish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
}


class ActNet(nn.Module):
    """conv-BN-act, conv-act (with a residual addition), avg pooling, linear: one activation type."""

    def __init__(self, act: str, num_classes: int = 5) -> None:
        super().__init__()
        make = ACTIVATIONS[act]
        self.c1, self.n1, self.a1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), make()
        self.c2, self.a2 = nn.Conv2d(6, 6, 3, padding=1), make()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, num_classes)

    def forward(self, x: T) -> T:
        x = self.a1(self.n1(self.c1(x)))
        x = self.a2(self.c2(x)) + x
        return self.fc(torch.flatten(self.pool(x), 1))


def act_net(act: str) -> ActNet:
    return init_(ActNet(act), seed=2)


class MaxPoolNet(nn.Module):
    """conv-ReLU, overlapping padded max pooling (3x3, stride 2, padding 1), conv-ReLU, 2x2 max pool, linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()
        self.p1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.c2, self.r2 = nn.Conv2d(6, 6, 3, padding=1), nn.ReLU()
        self.p2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 2 * 2, num_classes)

    def forward(self, x: T) -> T:
        x = self.p1(self.r1(self.c1(x)))
        x = self.p2(self.r2(self.c2(x)))
        return self.fc(torch.flatten(x, 1))


def maxpool_net() -> MaxPoolNet:
    return init_(MaxPoolNet(), seed=3)


class Functional(nn.Module):
    """A model given as a function of the input batch (returns ``(B, K)`` logits)."""

    def __init__(self, fn: Callable[[T], T]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: T) -> T:
        return self.fn(x)


def vgg_cnn(num_classes: int = 5) -> nn.Sequential:
    """Module-only VGG-like net: conv-BN-ReLU, max pooling, conv-BN-ReLU, conv-ReLU, average pooling, two linears."""
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 16),
        nn.ReLU(),
        nn.Linear(16, num_classes),
    )
    return init_(net, seed=4)


def without_biases(net: nn.Module) -> nn.Module:
    """``net`` with every bias, BatchNorm shift and running mean set to 0 (in place): a network whose output is a
    sum of input contributions, where relevance is conserved exactly."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.bias.zero_()
            elif isinstance(getattr(m, "bias", None), torch.Tensor):
                m.bias.zero_()
    return net
