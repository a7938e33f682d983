"""`digits_cnn`: a small CNN trained on the clean digits train split, its weights shipped with the package.

`train_digits_cnn` is the recipe that made the shipped weights (``tools/ship_digits_weights.py`` runs it); the
weights are shipped so that which digits the model misreads does not depend on the CPU that trained it."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cnnlens.core.errors import CnnlensError
from cnnlens.data import DIGITS_SIZE, digits
from cnnlens.models._classifier import Classifier, Preprocessing

DIGITS_PREPROCESSING = Preprocessing(
    input_size=(DIGITS_SIZE, DIGITS_SIZE), resize=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)
WEIGHTS = Path(__file__).with_name("weights") / "digits_cnn.pt"
# What the shipped file is, and what it measured when it was saved (tools/ship_digits_weights.py writes these).
SHIPPED = {
    "sha256": "cc84d099b6fd0286679513bcd96e88562a7133dfca036d68a2f736a508926c29",
    "seed": 0,
    "epochs": 12,
    "test_correct": 351,  # of the 359 images of digits("test")
    "field_correct": 187,  # of the 360 images of digits("field")
}
_EPOCHS = 12
_BATCH = 32


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class DigitsCNN(nn.Module):
    """Three conv blocks (32x32 -> 16x16 -> 8x8), global average pooling, one linear layer."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 8, True), _block(8, 16, True), _block(16, 32, False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def digits_tensors(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) uint8 digits -> (N, 3, H, W) normalized input, as ``DIGITS_PREPROCESSING`` computes it."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / np.float32(255.0))
    return DIGITS_PREPROCESSING.normalize(x.unsqueeze(1).expand(-1, 3, -1, -1))


def digits_classifier(model: DigitsCNN, map_location: str | torch.device = "cpu") -> Classifier:
    """``model`` (in eval mode, on ``map_location``) as the digits classifier: classes ``"0"``..``"9"``."""
    model.to(map_location).eval()
    return Classifier(model, DIGITS_PREPROCESSING, [str(d) for d in range(10)], "digits_cnn")


def train_digits_cnn(seed: int = 0, epochs: int = _EPOCHS, progress: bool = False) -> DigitsCNN:
    """A `DigitsCNN` trained on ``digits("train", seed)`` (Adam, one-cycle schedule, batches of 32), in eval mode.

    Deterministic under ``seed`` on one machine; the global RNG is left alone. The shipped weights are
    ``train_digits_cnn(seed=0)`` (about 15 s on one CPU core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this net is too small to gain from threads, and loses much on a busy machine
    try:
        return _train_steps(int(seed), int(epochs), progress)
    finally:
        torch.set_num_threads(threads)


def _train_steps(seed: int, epochs: int, progress: bool) -> DigitsCNN:
    train = digits("train", seed=seed)
    x, y = digits_tensors(train.images), torch.from_numpy(train.labels)
    model = _fresh(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * -(-len(x) // _BATCH))
    model.train()
    for _ in tqdm(range(epochs), desc="training digits_cnn", unit="epoch", file=sys.stderr, disable=not progress):
        for batch in torch.randperm(len(x), generator=gen).split(_BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
            sched.step()
    return model.eval()


def _fresh(seed: int) -> DigitsCNN:
    with torch.random.fork_rng(devices=[]):  # building the module draws initial weights; the caller's RNG is kept
        torch.manual_seed(seed)
        return DigitsCNN()


def digits_cnn(map_location: str | torch.device = "cpu") -> Classifier:
    """The bundled digits classifier (classes ``"0"``..``"9"``): the weights shipped with the package.

    They are ``train_digits_cnn(seed=0)``, saved once, so the model reads every digit the same on every machine;
    the file is checked against its SHA-256. ``classifier.info`` says where the weights came from.
    """
    try:
        data = WEIGHTS.read_bytes()
    except OSError as e:
        raise CnnlensError(f"The digits model's weights {str(WEIGHTS)!r} cannot be read ({e}); {_DAMAGED}") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHIPPED["sha256"]:
        raise CnnlensError(
            f"The digits model's weights {str(WEIGHTS)!r} are not the shipped file (SHA-256 {digest[:12]}..., "
            f"expected {str(SHIPPED['sha256'])[:12]}...); {_DAMAGED}"
        )
    model = _fresh(0)
    model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    classifier = digits_classifier(model, map_location)
    classifier.info = {"weights": "shipped", "sha256": digest, "seed": SHIPPED["seed"], "epochs": SHIPPED["epochs"]}
    return classifier


_DAMAGED = "the cnnlens package is damaged: reinstall it (pip install --force-reinstall cnnlens)."
