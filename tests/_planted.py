"""Planted concepts: a cross and a ring at random positions on noise, and a small CNN trained on them in seconds.

The CNN learns one detector logit per pattern (``z_cross``, ``z_ring``: binary cross-entropy on whether each is
present); its last layer is then rewritten so that the class-1 logit is ``2 z_cross + z_ring`` and the class-0
logit its negative: the class depends on the cross twice as much as on the ring. ``boxes`` hold each
pattern's position, the truth the concept maps are checked against.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

SIZE, PATTERN = 32, 9


def _cross() -> np.ndarray:
    p = np.zeros((PATTERN, PATTERN))
    p[PATTERN // 2 - 1 : PATTERN // 2 + 1, :] = 1.0
    p[:, PATTERN // 2 - 1 : PATTERN // 2 + 1] = 1.0
    return p


def _ring() -> np.ndarray:
    yy, xx = np.mgrid[:PATTERN, :PATTERN] - (PATTERN - 1) / 2
    r = np.hypot(yy, xx)
    return ((r > 2.6) & (r < 4.4)).astype(float)


def planted(n: int, seed: int, cross: bool | None = None, ring: bool | None = None):
    """``(x (n, 1, 32, 32), has (n, 2) [cross, ring], boxes (n, 2, 2) top-left of each pattern or -1)``.

    ``cross``/``ring``: force the pattern in (True) or out (False); ``None``: present with probability 1/2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.35, size=(n, SIZE, SIZE))
    has = np.zeros((n, 2), dtype=bool)
    boxes = -np.ones((n, 2, 2), dtype=np.int64)
    shapes = (_cross(), _ring())
    for i in range(n):
        want = [cross, ring]
        has[i] = [rng.random() < 0.5 if w is None else w for w in want]
        while True:  # positions that do not overlap
            pos = rng.integers(0, SIZE - PATTERN + 1, size=(2, 2))
            if np.abs(pos[0] - pos[1]).max() >= PATTERN + 1:
                break
        for j in range(2):
            if has[i, j]:
                t, left = pos[j]
                patch = x[i, t : t + PATTERN, left : left + PATTERN]
                x[i, t : t + PATTERN, left : left + PATTERN] = np.maximum(patch, shapes[j])
                boxes[i, j] = pos[j]
    return torch.tensor(x[:, None], dtype=torch.float32), has, boxes


class PlantedCNN(nn.Module):
    """conv-ReLU-pool (16x16) -> conv-ReLU -> conv-ReLU (the concept layer, 16 channels at 16x16) -> max -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.block(self.stem(x)))).flatten(1))


@functools.lru_cache(maxsize=1)
def planted_cnn() -> PlantedCNN:
    """The CNN trained on 1024 planted images (seconds on one core), deterministic."""
    x, has, _ = planted(1024, seed=1)
    target = torch.tensor(has, dtype=torch.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = PlantedCNN()
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=8 * 16)
            for _ in range(8):
                for batch in torch.randperm(len(x)).split(64):
                    opt.zero_grad()
                    nn.functional.binary_cross_entropy_with_logits(model(x[batch]), target[batch]).backward()
                    opt.step()
                    sched.step()
    finally:
        torch.set_num_threads(threads)
    mix = torch.tensor([[-2.0, -1.0], [2.0, 1.0]])  # class 1: 2 z_cross + z_ring; class 0: its negative
    with torch.no_grad():
        model.fc.weight.copy_(mix @ model.fc.weight)
        model.fc.bias.copy_(mix @ model.fc.bias)
    return model.eval()
