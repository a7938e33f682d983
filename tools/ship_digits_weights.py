"""Train the bundled digits model once and ship its weights: ``python tools/ship_digits_weights.py``.

Writes ``src/cnnlens/models/weights/digits_cnn.pt`` (the state dict of ``train_digits_cnn(seed=0)``) and prints the
``SHIPPED`` record (its SHA-256 and its accuracy) to paste into ``src/cnnlens/models/_digits.py``. Run it only when
the architecture, the data or the training recipe changes: the shipped file is what makes the model's mistakes the
same on every machine."""

from __future__ import annotations

import hashlib
import io
import json

import torch

from cnnlens.core.files import write_bytes
from cnnlens.data import digits
from cnnlens.evaluation import evaluate
from cnnlens.models._digits import _EPOCHS, WEIGHTS, digits_classifier, train_digits_cnn


def main() -> None:
    model = train_digits_cnn(seed=0, progress=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_bytes(WEIGHTS, buffer.getvalue())  # atomic: temp file + rename, never through a link
    clf = digits_classifier(model)
    correct = {
        f"{split}_correct": int(round(evaluate(clf, digits(split), progress=False).accuracy * len(digits(split))))
        for split in ("test", "field")
    }
    record = {"sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "seed": 0, "epochs": _EPOCHS, **correct}
    print(f"{WEIGHTS} ({len(buffer.getvalue())} bytes)\nSHIPPED = {json.dumps(record, indent=4)}")


if __name__ == "__main__":
    main()
