"""Tests for cnnlens.data: decoding images of many kinds and the bundled sample images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlens.core.errors import CnnlensError
from cnnlens.data import SAMPLE_IMAGES, load_image, sample_image, sample_images


def _px(im: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(im)[y, x])


def _check_rgb(im: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(im, Image.Image)
    assert im.mode == "RGB"
    assert im.size == size


# -- files of various modes --------------------------------------------------------------------


def test_grayscale_png(tmp_path: Path) -> None:
    a = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (7, 1))  # 7 x 25
    path = tmp_path / "gray.png"
    Image.fromarray(a, mode="L").save(path)
    im = load_image(path)
    _check_rgb(im, (25, 7))
    assert _px(im, 3, 2) == (30, 30, 30)
    assert _px(im, 24, 6) == (240, 240, 240)


def test_one_bit_png(tmp_path: Path) -> None:
    a = np.zeros((4, 6), dtype=bool)
    a[:, 3:] = True
    path = tmp_path / "bw.png"
    Image.fromarray(a).save(path)
    im = load_image(str(path))
    _check_rgb(im, (6, 4))
    assert _px(im, 0, 0) == (0, 0, 0)
    assert _px(im, 5, 3) == (255, 255, 255)


def test_rgba_png_is_composited_on_white(tmp_path: Path) -> None:
    a = np.zeros((5, 8, 4), dtype=np.uint8)
    a[..., :3] = (200, 40, 10)
    a[:, :2, 3] = 255  # opaque
    a[:, 2:4, 3] = 0  # fully transparent
    a[:, 4:, 3] = 128  # half
    path = tmp_path / "rgba.png"
    Image.fromarray(a, mode="RGBA").save(path)
    im = load_image(path)
    _check_rgb(im, (8, 5))
    assert _px(im, 0, 0) == (200, 40, 10)
    assert _px(im, 3, 4) == (255, 255, 255)
    expected = [c * 128 / 255 + 255 * (1 - 128 / 255) for c in (200, 40, 10)]
    assert np.allclose(_px(im, 6, 2), expected, atol=1.01)


def test_la_png(tmp_path: Path) -> None:
    a = np.zeros((3, 4, 2), dtype=np.uint8)
    a[..., 0] = 50
    a[:, 2:, 1] = 255
    path = tmp_path / "la.png"
    Image.fromarray(a, mode="LA").save(path)
    im = load_image(path)
    _check_rgb(im, (4, 3))
    assert _px(im, 0, 0) == (255, 255, 255)  # transparent -> white
    assert _px(im, 3, 2) == (50, 50, 50)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (6, 3), 0)
    im.putpalette([10, 20, 30, 250, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    im.putpixel((1, 1), 1)
    im.putpixel((2, 1), 2)
    path = tmp_path / "pal.png"
    im.save(path, transparency=2)
    out = load_image(path)
    _check_rgb(out, (6, 3))
    assert _px(out, 0, 0) == (10, 20, 30)
    assert _px(out, 1, 1) == (250, 0, 0)
    assert _px(out, 2, 1) == (255, 255, 255)  # transparent palette entry


def test_cmyk_tiff(tmp_path: Path) -> None:
    a = np.zeros((4, 5, 4), dtype=np.uint8)
    a[:, 3:, 0] = 255  # pure cyan on the right, white (no ink) on the left
    path = tmp_path / "cmyk.tif"
    Image.fromarray(a, mode="CMYK").save(path)
    assert Image.open(path).mode == "CMYK"
    im = load_image(path)
    _check_rgb(im, (5, 4))
    assert _px(im, 0, 0) == (255, 255, 255)
    assert _px(im, 4, 3) == (0, 255, 255)


def test_sixteen_bit_png(tmp_path: Path) -> None:
    a = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")
    im = load_image(path)
    _check_rgb(im, (3, 1))
    assert [_px(im, x, 0) for x in range(3)] == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


def test_rgb_file_is_usable_after_loading(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(a).save(path)
    im = load_image(path)
    np.testing.assert_array_equal(np.asarray(im), a)


# -- arrays and PIL images ---------------------------------------------------------------------


def test_arrays_of_various_dtypes_and_shapes() -> None:
    f = np.full((2, 3, 3), 0.5, dtype=np.float32)
    assert _px(load_image(f), 0, 0) == (128, 128, 128)
    u16 = np.full((2, 3), 257 * 7, dtype=np.uint16)
    assert _px(load_image(u16), 2, 1) == (7, 7, 7)
    dark16 = np.full((2, 2), 200, dtype=">u2")  # big-endian 16 bit: 200 / 257 rounds to 1
    assert _px(load_image(dark16), 0, 0) == (1, 1, 1)
    b = np.array([[True, False]])
    assert [_px(load_image(b), x, 0) for x in range(2)] == [(255, 255, 255), (0, 0, 0)]
    one = np.full((2, 2, 1), 9, dtype=np.uint8)
    assert _px(load_image(one), 1, 1) == (9, 9, 9)
    rgba = np.zeros((2, 2, 4), dtype=np.float64)  # transparent black -> white
    assert _px(load_image(rgba), 0, 0) == (255, 255, 255)
    _check_rgb(load_image(np.zeros((2, 5, 3), dtype=np.uint8)), (5, 2))


def test_pil_modes() -> None:
    assert _px(load_image(Image.new("L", (2, 2), 77)), 1, 1) == (77, 77, 77)
    assert _px(load_image(Image.new("RGBA", (2, 2), (1, 2, 3, 255))), 0, 0) == (1, 2, 3)
    f = Image.fromarray(np.full((2, 2), 0.25, dtype=np.float32), mode="F")
    assert _px(load_image(f), 0, 0) == (64, 64, 64)


def test_bad_arrays_raise_helpful_errors() -> None:
    with pytest.raises(CnnlensError, match="divide by 255"):
        load_image(np.full((4, 4, 3), 200.0))
    with pytest.raises(CnnlensError, match="transpose"):
        load_image(np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(CnnlensError, match=r"\(H, W\)"):
        load_image(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(CnnlensError, match="NaN"):
        load_image(np.full((2, 2), np.nan))
    with pytest.raises(CnnlensError, match="file path, a PIL image"):
        load_image(42)  # type: ignore[arg-type]


# -- broken files ------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(CnnlensError, match="not found") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_png_names_the_path(tmp_path: Path) -> None:
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    good = tmp_path / "good.png"
    Image.fromarray(a).save(good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnlensError, match="Could not decode") as info:
        load_image(bad)
    assert str(bad) in str(info.value)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "x.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(CnnlensError, match="Could not decode") as info:
        load_image(str(path))
    assert str(path) in str(info.value)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CnnlensError, match="directory"):
        load_image(tmp_path)


# -- sample images -----------------------------------------------------------------------------


def test_sample_images_sizes_and_order() -> None:
    images = sample_images()
    assert list(images) == list(SAMPLE_IMAGES) == ["chelsea", "coffee", "astronaut", "rocket"]
    sizes = {name: im.size for name, im in images.items()}
    assert sizes == {
        "chelsea": (451, 300),
        "coffee": (600, 400),
        "astronaut": (512, 512),
        "rocket": (640, 427),
    }
    assert all(im.mode == "RGB" for im in images.values())


def test_sample_image_matches_skimage_and_subsets() -> None:
    import skimage.data

    np.testing.assert_array_equal(np.asarray(sample_image("coffee")), skimage.data.coffee())
    assert list(sample_images(["rocket", "chelsea"])) == ["rocket", "chelsea"]


def test_unknown_sample_image_lists_names() -> None:
    with pytest.raises(CnnlensError, match="chelsea, coffee, astronaut, rocket"):
        sample_image("dog")
