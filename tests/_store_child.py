"""A dataset run for the store tests, and a child process that dies by SIGKILL at a chosen moment of it.

``python _store_child.py MOMENT OUT``: run `SETTINGS` on `subset()` into ``OUT`` with the shipped digits model, and
kill the process (``os.kill(getpid(), SIGKILL)``, as ``kill -9`` does) at ``MOMENT``:

- ``manifest``: halfway through writing the manifest (a temporary file half written, no manifest yet);
- ``maps``: halfway through writing one of shard 2's map files (Zarr's own temporary file half written, some of
  shard 2's maps already in place);
- ``table``: halfway through writing shard 3's images table, its commit mark (its explanations are written).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SETTINGS: dict[str, Any] = {
    # a label that is not a registry name, and a random method: its noise must come out the same after a resume
    "methods": {
        "saliency": {},
        "grad_cam": {},
        "noisy": {"method": "saliency", "smooth": "smoothgrad", "smooth_samples": 3},
    },
    "metrics": {"deletion": {"steps": 4}},
    "explain": "both",
    "shard_size": 8,
    "seed": 3,
    "batch_size": 16,
}
IMAGES = 40  # five shards of eight


def subset() -> Any:
    """The first ``IMAGES`` digits of the field split, as an in-memory data set."""
    from cnnlens.data import ArrayImages, digits

    d = digits("field")
    return ArrayImages(d.images[:IMAGES], d.labels[:IMAGES], d.classes, ids=d.ids[:IMAGES], name="field40")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _half(path: Path, data: bytes) -> None:
    """Write half of ``data`` to ``atomic_path(path)``'s temporary file, then die (the rename never happens)."""
    from cnnlens.core.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data[: len(data) // 2])
        _die()


def tear_zarr_chunk(match: Callable[[str], bool], nth: int = 1) -> None:
    """Make Zarr die halfway through writing the ``nth`` chunk file whose path ``match``es (its temporary file half
    written, never renamed)."""
    import zarr.storage._local as local

    real_put, seen = local._put, []

    def put(path: Path, value: Any, exclusive: bool = False) -> int:
        if match(Path(path).as_posix()):
            seen.append(path)
            if len(seen) == nth:
                data = bytes(value.as_buffer_like())
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                with local._atomic_write(Path(path), "wb") as f:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    _die()
        return real_put(path, value, exclusive)

    local._put = put


def _arm(moment: str) -> None:
    from cnnlens.store import _layout

    if moment == "manifest":

        def write_json(path: Path, value: Any, **dumps: Any) -> Path:
            import json

            _half(Path(path), json.dumps(value).encode())
            return Path(path)

        _layout.write_json = write_json
    elif moment == "table":
        real = _layout.write_bytes

        def write_bytes(path: Path, data: bytes) -> Path:
            if Path(path).parent.name == "images" and Path(path).name == _layout.part_name(3):
                _half(Path(path), data)
            return real(path, data)

        _layout.write_bytes = write_bytes
    elif moment == "maps":
        tear_zarr_chunk(lambda posix: "/c/2/" in posix, nth=2)
    else:
        raise SystemExit(f"unknown moment {moment!r}")


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    from cnnlens.models import digits_cnn
    from cnnlens.store import run

    moment, out = argv
    _arm(moment)
    model = digits_cnn()
    run(model, subset(), out=out, progress=False, **SETTINGS)
    raise SystemExit("the run finished: the kill never happened")


if __name__ == "__main__":
    main(sys.argv[1:])
