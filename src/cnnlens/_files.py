"""Writing files safely: every file appears whole or not at all, and never through a symlink.

``atomic_path(path)`` yields a temporary name in the same folder; when the ``with`` block ends without an error the
temporary file is renamed over ``path`` (``os.replace``, atomic on POSIX and Windows), otherwise it is removed. A
reader therefore sees the old file or the new one, never half of one, also when the process is killed. A ``path``
that is a symlink is refused (writing would follow it to a file elsewhere).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._errors import CnnlensError

TMP_PREFIX = ".cnnlens-tmp-"


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; raises ``CnnlensError`` when it is a symlink or a folder (nothing would be safe to write)."""
    p = Path(path)
    if p.is_symlink():
        raise CnnlensError(
            f"{p} is a symlink; cnnlens does not write through symlinks. Remove it or choose another output"
        )
    if p.is_dir():
        raise CnnlensError(f"{p} is a folder, not a file; choose another output name")
    return p


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed.

    The temporary name keeps ``path``'s suffix, so libraries that choose a format by suffix (matplotlib, NumPy)
    write the right one. Raises ``CnnlensError`` when ``path`` is a symlink or a folder.
    """
    target = check_writable(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def remove_temporary(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files ``atomic_path`` left in ``folder`` when its process was killed (call only while
    no other process writes there, e.g. holding a lock); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX) and (p.is_file() or p.is_symlink())]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename); returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], value: Any, **dumps: Any) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically; ``dumps``: extra ``json.dumps`` arguments."""
    return write_text(path, json.dumps(value, indent=2, **dumps) + "\n")


def save_figure(fig: Any, path: str | os.PathLike[str], **savefig: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically (format from the suffix), then close the figure; returns ``path``."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **{"dpi": 110, "bbox_inches": "tight", **savefig})
    finally:
        plt.close(fig)
    return Path(path)
