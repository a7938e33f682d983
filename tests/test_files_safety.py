"""Files: ``--out`` is never written through a symlink (every command), a refused command leaves nothing behind,
special files (FIFO, socket) are skipped with a message and never opened for reading, and PIL's decompression
bomb warning becomes a cnnlens message naming the file."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlens
from cnnlens.cli import main
from cnnlens.core.files import LOCK, output_folder, write_text
from cnnlens.data import CsvImages, ImageFolder, load_image

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and symlinks as on POSIX"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from _tiny_models import TinyCNN

    root = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    torch.save(TinyCNN(num_classes=3).state_dict(), root / "tiny.pt")
    rng = np.random.default_rng(0)
    for name in "abc":
        (root / "data" / name).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "data" / name / f"{j}.png")
    model = ["--model", str(root / "tiny.pt"), "--arch", "_tiny_models:TinyCNN", "--classes", "a,b,c"]
    model += ["--input-size", "16", "--no-progress"]
    return SimpleNamespace(root=root, data=root / "data", image=root / "data" / "a" / "0.png", model=model)


def _commands(tiny: SimpleNamespace, out: Path) -> dict[str, list[str]]:
    return {
        "explain": ["explain", str(tiny.image), "--methods", "saliency", "--out", str(out), *tiny.model],
        "evaluate": ["evaluate", str(tiny.data), "--out", str(out), *tiny.model],
        "report": ["report", "--data", str(tiny.data), "--methods", "saliency", "--no-scorecard", "--no-concepts",
                   "--out", str(out), *tiny.model],
    }  # fmt: skip


@pytest.mark.parametrize("command", ["explain", "evaluate", "report"])
def test_out_is_never_written_through_a_symlink_to_a_folder(tiny, tmp_path: Path, capsys, command) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    assert main(_commands(tiny, link)[command]) == 2
    err = capsys.readouterr().err
    assert f"{link} is a symlink to {target}" in err and "does not write through symlinks" in err and "--out" in err
    assert list(target.iterdir()) == [] and link.is_symlink()  # nothing written there, not even the lock


def test_a_dangling_symlink_as_out_is_a_clear_error(tiny, tmp_path: Path, capsys) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert main(_commands(tiny, link)["explain"]) == 2
    err = capsys.readouterr().err
    assert "is a symlink to" in err and "which does not exist" in err and "File exists" not in err
    assert not (tmp_path / "nowhere").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["link"]


def test_a_refused_command_leaves_no_lock_behind(tiny, tmp_path: Path, capsys) -> None:
    mine = tmp_path / "mine"
    write_text(mine / "notes.txt", "mine")
    assert main(_commands(tiny, mine)["evaluate"]) == 2
    assert "holds files that no cnnlens run wrote there (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # no .cnnlens.lock


def test_a_failed_run_that_wrote_nothing_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    (tmp_path / ".hidden").write_text("x")
    with pytest.raises(RuntimeError), output_folder(tmp_path, "test"):
        raise RuntimeError("before any file")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden"]
    with output_folder(tmp_path, "test") as folder:  # a run that writes keeps its lock file, as before
        write_text(folder.file("a.txt"), "a")
    assert (tmp_path / LOCK).exists()


def _hung(function, *args, timeout: float = 20.0):
    """Run ``function(*args)`` in a thread; returns (finished, result or exception)."""
    box: list = []

    def call() -> None:
        try:
            box.append(function(*args))
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box.append(e)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), box[0] if box else None


def _unblock(fifo: Path) -> None:
    """Open the FIFO's write end (non-blocking when a reader waits), so that a reader stuck in open() returns."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_given_as_an_image_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    done, result = _hung(load_image, fifo, timeout=10)
    _unblock(fifo)
    assert done, "load_image waited on the FIFO"
    assert isinstance(result, cnnlens.CnnlensError) and "is a FIFO (named pipe), not a regular file" in str(result)
    link = tmp_path / "y.png"
    link.symlink_to(fifo)  # through a symlink too
    with pytest.raises(cnnlens.CnnlensError, match="FIFO"):
        load_image(link)


def test_cli_explain_of_a_fifo_ends_with_a_message(tiny, tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    argv = ["explain", str(fifo), "--methods", "saliency", "--out", str(tmp_path / "o"), *tiny.model]
    done, code = _hung(main, argv, timeout=60)
    _unblock(fifo)
    assert done, "cnnlens explain waited on the FIFO"
    assert code != 0 and "FIFO (named pipe)" in capsys.readouterr().err


def test_special_files_in_a_data_folder_are_skipped_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "0.png")
    os.mkfifo(tmp_path / "a" / "pipe.png")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "a" / "s.png"))
        with pytest.warns(cnnlens.CnnlensWarning, match="Skipped 2 unusable") as caught:
            data = ImageFolder(tmp_path)
        with pytest.raises(cnnlens.CnnlensError, match="FIFO"):
            ImageFolder(tmp_path, on_error="raise")
    message = str(caught[0].message)
    assert "pipe.png: a FIFO (named pipe), not a regular file" in message and "s.png: a socket" in message
    assert [p.name for p, _ in data.items] == ["0.png"] and len(data.skipped) == 2


def test_a_fifo_in_a_csv_is_named_as_such(tmp_path: Path) -> None:

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "0.png")
    os.mkfifo(tmp_path / "1.png")
    (tmp_path / "list.csv").write_text("path,label\n0.png,a\n1.png,a\n")
    with pytest.warns(cnnlens.CnnlensWarning, match="a FIFO"):
        data = CsvImages(tmp_path / "list.csv")
    assert len(data) == 1
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(cnnlens.CnnlensError, match="is a FIFO"):
        CsvImages(tmp_path / "fifo.csv")


def test_a_decompression_bomb_is_a_cnnlens_message_naming_the_file(tiny, tmp_path: Path, capsys, monkeypatch):
    data = tmp_path / "data"
    for name in "abc":
        (data / name).mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(data / name / "0.png")
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(data / "a" / "big.png")  # 900 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 900: over the limit, under twice it (PIL warns)
    argv = ["evaluate", str(data), "--out", str(tmp_path / "o"), "--on-error", "report", *tiny.model]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(argv)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]  # none raw
    err = capsys.readouterr().err
    assert f"cnnlens: warning: '{data / 'a' / 'big.png'}' claims 30x30 pixels, more than" in err
    assert "decompression bomb" in err and "site-packages" not in err and "DecompressionBombWarning" not in err
