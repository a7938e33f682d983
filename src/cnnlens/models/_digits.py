"""`digits_cnn`: a small CNN trained in seconds on the clean digits train split, cached after the first run."""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cnnlens.core.errors import CnnlensError, say
from cnnlens.core.files import write_json
from cnnlens.data import DIGITS_SIZE, digits
from cnnlens.models._classifier import Classifier, Preprocessing

DIGITS_PREPROCESSING = Preprocessing(
    input_size=(DIGITS_SIZE, DIGITS_SIZE), resize=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
)
DEFAULT_CACHE_DIR = Path("~/.cache/cnnlens")
_VERSION = 1  # bump when the architecture, data or training recipe changes (invalidates caches)
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


def _train(seed: int, progress: bool) -> tuple[DigitsCNN, dict[str, float]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this net is too small to gain from threads, and loses much on a busy machine
    try:
        return _train_steps(seed, progress)
    finally:
        torch.set_num_threads(threads)


def _train_steps(seed: int, progress: bool) -> tuple[DigitsCNN, dict[str, float]]:
    start = time.perf_counter()
    train = digits("train", seed=seed)
    x, y = digits_tensors(train.images), torch.from_numpy(train.labels)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is left alone
        torch.manual_seed(seed)
        model = DigitsCNN()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=_EPOCHS * -(-len(x) // _BATCH))
    model.train()
    for _ in tqdm(range(_EPOCHS), desc="training digits_cnn", unit="epoch", file=sys.stderr, disable=not progress):
        for batch in torch.randperm(len(x), generator=gen).split(_BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
            sched.step()
    model.eval()
    return model, {"seconds": time.perf_counter() - start, "epochs": _EPOCHS, "seed": seed}


def digits_cnn(
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    map_location: str | torch.device = "cpu",
    retrain: bool = False,
    progress: bool = True,
) -> Classifier:
    """The bundled digits classifier (classes ``"0"``..``"9"``), trained on ``digits("train", seed)``.

    Weights are cached in ``cache_dir`` (default ``~/.cache/cnnlens``) and reused; ``retrain=True`` trains again.
    ``classifier.info`` holds the training time and whether the weights came from the cache.
    """
    folder = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    path = folder / f"digits_cnn-v{_VERSION}-seed{int(seed)}.pt"
    if path.exists() and not retrain:
        with torch.random.fork_rng(devices=[]):  # building the module draws initial weights
            model = DigitsCNN()
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
            raise CnnlensError(
                f"The cached digits model {str(path)!r} cannot be read ({e}); delete it"
                + say(" or pass retrain=True.", " (it is trained again on the next run).")
            ) from e
        info = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
        info["cached"] = True
    else:
        model, info = _train(int(seed), progress)
        _save(model, info, path)
        info["cached"] = False
    model.to(map_location).eval()
    classifier = Classifier(model, DIGITS_PREPROCESSING, [str(d) for d in range(10)], "digits_cnn")
    classifier.info = info
    return classifier


def _save(model: nn.Module, info: dict[str, float], path: Path) -> None:
    """Write atomically so a crash or a parallel run never leaves half a file behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            torch.save(model.state_dict(), f)
        os.replace(f.name, path)
        write_json(path.with_suffix(".json"), info)
    except OSError as e:
        raise CnnlensError(
            f"Cannot write the digits model cache to {str(path.parent)!r} ({e}); "
            + say("pass cache_dir= a writable folder.", "make that folder writable.")
        ) from e
