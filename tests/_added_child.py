"""A child process that adds explanations to a store (`Store.explain`) and dies by SIGKILL at a chosen moment.

``python _added_child.py MOMENT STORE``: add occlusion maps of `IDS` to ``STORE`` with the shipped digits model, and
kill the process (as ``kill -9`` does) at ``MOMENT``:

- ``maps``: halfway through writing a map file of the addition (Zarr's temporary file half written);
- ``rows``: halfway through writing the addition's rows (its commit mark), the maps and the manifest in place.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _store_child import _half, tear_zarr_chunk

ADDITION: dict[str, Any] = {"method": "occlusion", "explains": "label", "window": 8, "stride": 8}
COUNT = 6  # the first images of the store: shards 0 and 1 (shard size 32) hold some


def ids(store: Any) -> list[str]:
    return store.ids[:COUNT] + store.ids[40 : 40 + COUNT]


def _arm(moment: str) -> None:
    if moment == "rows":
        from cnnlens.store import _added

        def write_bytes(path: Path, data: bytes) -> Path:
            _half(Path(path), data)
            return Path(path)

        _added.write_bytes = write_bytes
    elif moment == "maps":
        tear_zarr_chunk(lambda posix: "/occlusion/" in posix and "/c/" in posix)
    else:
        raise SystemExit(f"unknown moment {moment!r}")


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    from cnnlens.models import digits_cnn
    from cnnlens.store import open_store

    moment, root = argv
    _arm(moment)
    store = open_store(root)
    options = {k: v for k, v in ADDITION.items() if k not in ("method", "explains")}
    store.explain(ids(store), ADDITION["method"], ADDITION["explains"], model=digits_cnn(),
                  progress=False, **options)  # fmt: skip
    raise SystemExit("the addition finished: the kill never happened")


if __name__ == "__main__":
    main(sys.argv[1:])
