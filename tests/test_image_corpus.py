"""Images users really have: decompression bombs and absurd strips are refused per file before any pixel is
decoded (and skipped under report mode), multi-frame files say which frame is used, symlinks in class folders
(followed, dangling, looping, reached twice) are followed once or reported, never dropped silently."""

from __future__ import annotations

import json
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.data import ImageFolder, UnlabelledImages, load_image


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and header claiming ``width`` x ``height`` pixels, with a token of data: a few
    hundred bytes on disk that would decode into gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def _png(path: Path, value: int, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- bombs and strips --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "claimed"), [((30000, 30000), "900 megapixels"), ((10000, 10000), "10000x10000")])
def test_a_bomb_is_refused_before_decoding(tmp_path: Path, size, claimed: str) -> None:
    """30000x30000 is over Pillow's own hard limit (its error); 10000x10000 only over its warning limit, which
    Pillow would decode (300 MB): both are a clear error, and memory does not move."""
    bomb = png_header_only(tmp_path / "bomb.png", *size)
    assert bomb.stat().st_size < 200
    before = _peak_rss_mb()
    with pytest.raises(CnnlensError, match=rf"'{bomb}' claims more pixels than the 89 megapixels that "
                       rf"PIL.Image.MAX_IMAGE_PIXELS allows \({claimed}.*decompression bomb and was not decoded. If "
                       "it is a genuine image, downscale it first or raise PIL.Image.MAX_IMAGE_PIXELS"):  # fmt: skip
        load_image(bomb)
    assert _peak_rss_mb() - before < 50


def test_the_bomb_fix_raising_the_limit_works(tmp_path: Path, monkeypatch) -> None:
    image = _png(tmp_path / "big.png", 7, (40, 30))  # 1200 pixels, genuinely
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(CnnlensError, match="decompression bomb"):
        load_image(image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # the fix the message gives
    assert load_image(image).size == (40, 30)


def test_an_absurd_strip_is_refused_and_its_fix_works(tmp_path: Path) -> None:
    strip = Image.fromarray(np.zeros((1, 100000, 3), np.uint8))
    strip.save(tmp_path / "strip.png")
    with pytest.raises(CnnlensError, match=r"is 100000x1 pixels, an aspect ratio of 100000:1 \(cnnlens takes up to "
                       r"50:1\).*Crop it into pieces first"):  # fmt: skip
        load_image(tmp_path / "strip.png")
    with pytest.raises(CnnlensError, match="aspect ratio of 100000:1"):
        load_image(np.zeros((100000, 1), np.uint8))  # arrays and PIL images too
    with pytest.raises(CnnlensError, match="aspect ratio of 100000:1"):
        load_image(strip)
    strip.crop((0, 0, 50, 1)).save(tmp_path / "piece.png")  # the fix: a piece is fine
    assert load_image(tmp_path / "piece.png").size == (50, 1)


def test_bombs_and_strips_are_per_file_errors_in_a_dataset(tmp_path: Path) -> None:
    import cnnlens
    from cnnlens.evaluation import evaluate

    for k in range(2):
        _png(tmp_path / "a" / f"{k}.png", 30 + k)
        _png(tmp_path / "b" / f"{k}.png", 200 + k)
    png_header_only(tmp_path / "a" / "bomb.png", 30000, 30000)
    Image.fromarray(np.zeros((1, 100000, 3), np.uint8)).save(tmp_path / "b" / "strip.png")
    data = ImageFolder(tmp_path)
    assert len(data) == 6  # listed; they fail when read, each with its reason
    net = cnnlens.load_model(
        _Brightness(), preprocessing={"input_size": (8, 8), "resize": None, "mean": 0, "std": 1}, class_names=["a", "b"]
    )
    with pytest.warns(CnnlensWarning, match="Skipped 2 unreadable sample"):
        e = evaluate(net, data, batch_size=2, on_error="report", progress=False)
    reasons = dict(e.skipped)
    assert "decompression bomb" in reasons[str(tmp_path / "a" / "bomb.png")]
    assert "aspect ratio of 100000:1" in reasons[str(tmp_path / "b" / "strip.png")]
    assert len(e.y_true) == 4 and e.accuracy == 1.0  # the readable images, all of them, rightly classified
    with pytest.raises(CnnlensError, match=r"bomb.png' cannot be read: .* \(or pass on_error='report' to skip"):
        evaluate(net, data, on_error="raise", progress=False)


class _Brightness(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], dim=1) * 20  # dark: a, bright: b


# -- several frames ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gif", ".tiff", ".png"])
def test_a_file_with_several_frames_says_the_first_is_used(tmp_path: Path, suffix: str) -> None:
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)) for v in (40, 128, 250)]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(CnnlensWarning, match=rf"anim{suffix}' holds 3 frames \(\w+\); the first frame is used"):
        image = load_image(path)
    assert abs(int(np.asarray(image)[0, 0, 0]) - 40) <= 2  # the first frame indeed


# -- symlinks in class folders -----------------------------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A class folder tree with every kind of link: a followed file link and folder link, a dangling link, a
    two-link loop, a folder link back to its parent, a second link to an image read already."""
    root = tmp_path / "data"
    _png(root / "a" / "1.png", 10)
    _png(tmp_path / "elsewhere" / "far.png", 20)
    (tmp_path / "shelf" / "sub").mkdir(parents=True)
    _png(tmp_path / "shelf" / "sub" / "deep.png", 30)
    (root / "a" / "far.png").symlink_to(tmp_path / "elsewhere" / "far.png")  # followed
    (root / "a" / "shelf").symlink_to(tmp_path / "shelf", target_is_directory=True)  # followed, once
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # dangling
    (root / "a" / "x.png").symlink_to(root / "a" / "y.png")  # x -> y -> x
    (root / "a" / "y.png").symlink_to(root / "a" / "x.png")
    (root / "a" / "up").symlink_to(root / "a", target_is_directory=True)  # a loop through a folder
    (root / "a" / "again.png").symlink_to(root / "a" / "1.png")  # the same file twice
    _png(root / "b" / "1.png", 200)
    (root / "c").symlink_to(tmp_path / "missing_folder", target_is_directory=True)  # a dangling class folder
    return root


def test_symlinks_are_followed_once_or_reported(linked: Path) -> None:
    with pytest.warns(CnnlensWarning, match=r"Skipped 6 unusable entr\(ies\)"):
        data = ImageFolder(linked)
    assert data.classes == ["a", "b"]
    assert sorted(Path(p).relative_to(linked).as_posix() for p in data.ids) == [
        "a/1.png", "a/far.png", "a/shelf/sub/deep.png", "b/1.png",
    ]  # fmt: skip
    reasons = {Path(p).relative_to(linked).as_posix(): r for p, r in data.skipped}
    assert reasons["a/gone.png"].startswith("a broken symlink (it points to")
    assert reasons["a/x.png"].startswith("a symlink loop") and reasons["a/y.png"].startswith("a symlink loop")
    assert reasons["a/up"] == f"a link to the folder {linked / 'a'}, which is read already"
    assert reasons["a/again.png"] == f"the same file as {linked / 'a' / '1.png'}, which is read already"
    assert reasons["c"].startswith("a broken symlink")
    assert len(data) + len(data.skipped) == 10  # every entry accounted for


def test_symlink_problems_raise_with_the_fix_in_api_words(linked: Path) -> None:
    with pytest.raises(CnnlensError, match=r"6 unusable entr\(ies\) under .*gone.png: a broken symlink.*Fix them, or "
                       r"pass on_error='report' to skip them"):  # fmt: skip
        ImageFolder(linked, on_error="raise")
    with pytest.raises(CnnlensError, match="a broken symlink"):
        UnlabelledImages(linked, on_error="raise")
    with pytest.raises(CnnlensError, match=r"is a broken symlink \(it points to .*nowhere.png"):
        load_image(linked / "a" / "gone.png")


def test_unlabelled_images_take_every_image_below_a_folder(linked: Path) -> None:
    _png(linked / "loose.png", 90)
    with pytest.warns(CnnlensWarning, match="Skipped 6"):
        data = UnlabelledImages(linked)
    assert data.classes == [".", "a", "b"] and len(data) == 5
    assert dict(zip((Path(p).name for p in data.ids), data.labels, strict=True))["loose.png"] == 0


# -- the command line --------------------------------------------------------------------------------------


def test_the_cli_stops_at_unusable_files_and_report_mode_skips_them(linked: Path, tmp_path: Path, capsys) -> None:
    from _tiny_models import TinyCNN
    from cnnlens.cli import main

    torch.save(TinyCNN(num_classes=2).state_dict(), tmp_path / "net.pt")
    model = ["--model", str(tmp_path / "net.pt"), "--arch", "_tiny_models:TinyCNN", "--num-classes", "2"]
    model += ["--classes", "a,b", "--input-size", "16", "--no-progress"]
    bombed = tmp_path / "bombed"
    _png(bombed / "a" / "1.png", 10)
    _png(bombed / "b" / "1.png", 200)
    png_header_only(bombed / "b" / "bomb.png", 30000, 30000)
    assert main(["evaluate", str(bombed), *model, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "decompression bomb and was not decoded. If it is a genuine image, downscale it first (e.g. to 4096" in err
    assert err.rstrip().endswith("(or pass --on-error report to skip unreadable files)")
    assert "raise PIL.Image.MAX_IMAGE_PIXELS" not in err  # an API fix, not a command-line one
    assert main(["evaluate", str(bombed), *model, "--out", str(tmp_path / "y"), "--on-error", "report"]) == 0
    assert f"skipped {bombed / 'b' / 'bomb.png'}: Image file" in capsys.readouterr().out
    Image.fromarray(np.zeros((1, 100000, 3), np.uint8)).save(linked / "b" / "strip.png")
    assert main(["evaluate", str(linked), *model, "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err
    assert "6 unusable entr(ies) under" in err and "a broken symlink" in err and "a symlink loop" in err
    assert "Fix them, or pass --on-error report to skip them." in err and "on_error=" not in err
    assert main(["evaluate", str(linked), *model, "--out", str(tmp_path / "r"), "--on-error", "report"]) == 0
    captured = capsys.readouterr()
    assert "Skipped 6 unusable entr(ies)" in captured.err and "listed in the outputs" in captured.err
    assert ".skipped" not in captured.err and "on_error=" not in captured.err
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    reasons = {Path(s["id"]).name: s["reason"] for s in saved["skipped"]}
    assert saved["samples"] == 4 and len(reasons) == 7
    assert reasons["strip.png"].startswith("Image ") and "aspect ratio of 100000:1" in reasons["strip.png"]
    assert reasons["gone.png"].startswith("a broken symlink") and reasons["up"].startswith("a link to the folder")
