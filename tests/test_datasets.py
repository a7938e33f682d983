"""ImageFolder and CsvImages: class order, decoding of many image modes, and clear reports of every file that
cannot be used (corrupt, missing, empty class, unknown label) with nothing lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlens import CnnlensError, CnnlensWarning
from cnnlens.data import ArrayImages, CsvImages, ImageFolder


def _save(path: Path, value: int = 100, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((5, 6), value, np.uint8)).convert(mode).save(path)
    return path


def test_image_folder_class_order_and_labels(tmp_path: Path) -> None:
    _save(tmp_path / "zebra" / "a.png", 10)
    _save(tmp_path / "ant" / "b.png", 20)
    _save(tmp_path / "ant" / "sub" / "c.png", 30)  # nested files belong to their class folder
    data = ImageFolder(tmp_path)
    assert data.classes == ["ant", "zebra"]
    assert sorted((Path(p).name, label) for p, label in zip(data.ids, data.labels, strict=True)) == [
        ("a.png", 1),
        ("b.png", 0),
        ("c.png", 0),
    ]
    given = ImageFolder(tmp_path, classes=["zebra", "ant"])
    assert given.classes == ["zebra", "ant"]
    assert dict(zip([Path(p).name for p in given.ids], given.labels, strict=True))["a.png"] == 0


def test_image_folder_decodes_many_modes_to_rgb(tmp_path: Path) -> None:
    root = tmp_path / "x"
    _save(root / "gray.png", 100, "L")
    _save(root / "rgba.png", 100, "RGBA")
    _save(root / "palette.png", 100, "P")
    _save(root / "cmyk.jpg", 100, "CMYK")
    Image.fromarray(np.full((5, 6), 100 * 257, np.uint16)).save(root / "deep.png")  # 16-bit
    data = ImageFolder(tmp_path)
    assert len(data) == 5
    for i in range(len(data)):
        im, label = data[i]
        assert im.mode == "RGB" and im.size == (6, 5) and label == 0
        assert abs(int(np.asarray(im)[2, 3, 0]) - 100) <= 3, data.ids[i]


def test_empty_class_folder_is_kept_and_reported(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    _save(tmp_path / "c" / "1.png")
    with pytest.warns(CnnlensWarning, match=r"No images for 1 class\(es\) \(b\)"):
        data = ImageFolder(tmp_path)
    assert data.classes == ["a", "b", "c"]  # "c" keeps index 2, as the model's output 2
    assert data.labels == [0, 2]
    assert data.empty_classes == ["b"]
    assert data.ignored == [str(tmp_path / "b" / "notes.txt")]


def test_corrupt_file_is_named_by_scan_and_by_reading(tmp_path: Path) -> None:
    _save(tmp_path / "a" / "good.png")
    bad = tmp_path / "a" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data = ImageFolder(tmp_path)
    assert len(data) == 2  # kept: decoding happens when read
    problems = data.scan()
    assert [p for p, _ in problems] == [str(bad)]
    index = data.ids.index(str(bad))
    with pytest.raises(CnnlensError, match="bad.png"):
        data[index]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(CnnlensError, match="not found"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(CnnlensError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    _save(tmp_path / "a" / "1.png")
    with pytest.raises(CnnlensError, match="on_error"):
        ImageFolder(tmp_path, on_error="ignore")


def test_csv_with_missing_path_reports_the_row_and_keeps_the_rest(tmp_path: Path) -> None:
    _save(tmp_path / "img" / "one.png", 10)
    _save(tmp_path / "img" / "two.png", 20)
    absolute = _save(tmp_path / "elsewhere" / "three.png", 30)
    csv = tmp_path / "list.csv"
    csv.write_text(f"path,label\nimg/one.png,10\nimg/gone.png,2\nimg/two.png,2\n{absolute},10\n\nbroken-row\n")
    with pytest.warns(CnnlensWarning, match="2 unusable row"):
        data = CsvImages(csv)
    assert data.classes == ["2", "10"]  # integer labels sort as numbers
    assert [Path(p).name for p in data.ids] == ["one.png", "two.png", "three.png"]
    assert data.labels == [1, 0, 1]
    reasons = dict(data.skipped)
    assert reasons[str(tmp_path / "img" / "gone.png")] == "row 3: file not found"
    assert any(p.endswith("list.csv:7") for p in reasons)
    assert len(data) + len(data.skipped) == 5  # every row accounted for
    assert np.asarray(data[1][0])[0, 0, 0] == 20


def test_csv_raise_mode_and_unknown_labels(tmp_path: Path) -> None:
    _save(tmp_path / "a.png")
    _save(tmp_path / "b.png")
    csv = tmp_path / "list.csv"
    csv.write_text("a.png,cat\nmissing.png,cat\n")
    with pytest.raises(CnnlensError, match="missing.png"):
        CsvImages(csv, on_error="raise")
    csv.write_text("a.png,cat\nb.png,wolf\n")
    with pytest.warns(CnnlensWarning, match="wolf"):
        data = CsvImages(csv, classes=["dog", "cat"])
    assert data.labels == [1] and data.skipped[0][0] == str(tmp_path / "b.png")
    with pytest.raises(CnnlensError, match="not found"):
        CsvImages(tmp_path / "nope.csv")


def test_array_images_validate_labels() -> None:
    data = ArrayImages(np.zeros((2, 4, 4), np.uint8), [0, 1], ["a", "b"])
    assert data[1][1] == 1 and data.ids == ["arrays[0]", "arrays[1]"]
    with pytest.raises(CnnlensError, match="class indices"):
        ArrayImages(np.zeros((2, 4, 4), np.uint8), [0, 2], ["a", "b"])
    with pytest.raises(CnnlensError, match="one label per image"):
        ArrayImages(np.zeros((2, 4, 4), np.uint8), [0], ["a", "b"])
    with pytest.raises(CnnlensError, match=r"integer class indices; got \['a', 'b'\]"):
        ArrayImages(np.zeros((2, 4, 4), np.uint8), ["a", "b"], ["a", "b"])
    with pytest.raises(CnnlensError, match="integer class indices"):
        ArrayImages(np.zeros((2, 4, 4), np.uint8), [0.0, 0.5], ["a", "b"])
    assert ArrayImages(np.zeros((2, 4, 4), np.uint8), np.array([1.0, 0.0]), ["a", "b"])[0][1] == 1


def test_open_dataset_from_text(tmp_path: Path) -> None:
    from cnnlens.data import open_dataset

    assert len(open_dataset("digits:field")) == 360
    _save(tmp_path / "a" / "1.png")
    assert isinstance(open_dataset(str(tmp_path)), ImageFolder)
    (tmp_path / "l.csv").write_text("a/1.png,a\n")
    assert isinstance(open_dataset(str(tmp_path / "l.csv")), CsvImages)
    with pytest.raises(CnnlensError, match="digits:test"):
        open_dataset("digits:valid")
    with pytest.raises(CnnlensError, match="Cannot open dataset"):
        open_dataset(str(tmp_path / "nothing"))
