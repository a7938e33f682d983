"""cnnlens.viz maps, views, boxes and panels: pixel values checked against hand computation and matplotlib's own
colormaps, figures inspected through their axes, texts, bars and rendered pixels."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from cnnlens import CnnlensError, viz

pytestmark = pytest.mark.usefixtures("one_thread")

GREEN, RED = to_rgba("#1a7f37"), to_rgba("#c62828")


def cmap_rgb(name: str, value: float) -> np.ndarray:
    return np.asarray(matplotlib.colormaps[name](value))[:3]


def half_map(h: int = 6, w: int = 8, left: float = 1.0, right: float = 0.0) -> np.ndarray:
    m = np.full((h, w), right)
    m[:, : w // 2] = left
    return m


def render(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255.0


def pixel_at(fig: Figure, rgba: np.ndarray, ax, fx: float, fy: float) -> np.ndarray:
    """Rendered colour at fraction (fx, fy) of ``ax`` (fy from the top)."""
    box = ax.get_window_extent()
    col = int(box.x0 + fx * box.width)
    row = int(rgba.shape[0] - (box.y1 - fy * box.height))
    return rgba[row, col]


def image_axes(fig: Figure) -> list:
    return [a for a in fig.axes if a.images and a.get_label() != "<colorbar>"]


# ---- maps -------------------------------------------------------------------------------------------------------


def test_channel_reductions_equal_hand_computed_values() -> None:
    a = np.array([[[1.0, -2.0], [0.0, 3.0]], [[-3.0, 2.0], [4.0, 0.0]], [[2.0, 2.0], [0.0, -1.0]]])  # (3, 2, 2)
    red = viz.reduce_channels
    np.testing.assert_allclose(red(a, "sum"), [[0.0, 2.0], [4.0, 2.0]])
    np.testing.assert_allclose(red(a, "max_abs"), [[-3.0, -2.0], [4.0, 3.0]])  # first of tied magnitudes
    np.testing.assert_allclose(red(a, "l2"), np.sqrt([[14.0, 12.0], [16.0, 10.0]]))
    np.testing.assert_allclose(red(torch.tensor(a), "l2"), red(a, "l2"))
    m = np.array([[-1.0, 2.0]])
    assert np.array_equal(red(m, "sum"), m) and np.array_equal(red(m[None], "max_abs"), m)
    np.testing.assert_allclose(red(m, "l2"), [[1.0, 2.0]])  # one channel: the norm is the magnitude


def test_shapes_tensors_and_bad_input() -> None:
    m = np.arange(12, dtype=float).reshape(3, 4) - 5
    ref = viz.to_heatmap(m, sign="all", percentile=None)
    np.testing.assert_allclose(ref, m / 6)
    for same in (torch.tensor(m)[None], torch.tensor(m, dtype=torch.float16), m[None, None]):
        np.testing.assert_allclose(viz.to_heatmap(same, sign="all", percentile=None), ref)
    bad = m.copy()
    bad[1, 2] = np.nan
    for wrong, words in [
        (np.zeros(5), "(C, H, W)"),
        (np.zeros((2, 3, 4, 5)), "(C, H, W)"),
        (np.zeros((224, 224, 3)), "channel-last"),
        (bad, "NaN"),
    ]:
        with pytest.raises(CnnlensError, match=words.replace("(", r"\(").replace(")", r"\)")):
            viz.to_heatmap(wrong)
    with pytest.raises(CnnlensError, match="reduce must be one of"):
        viz.to_heatmap(m, reduce="mean")
    with pytest.raises(CnnlensError, match="sign must be one of"):
        viz.to_heatmap(m, sign="both")
    with pytest.raises(CnnlensError, match="percentile"):
        viz.to_heatmap(m, percentile=0)


def test_outlier_percentile_caps_the_top() -> None:
    values = np.append(np.arange(100.0), 1e6)[None]  # 0..99 and one outlier, 101 values
    heat = viz.to_heatmap(values, percentile=99)
    # 99th percentile of 101 sorted values is the one at index 99 (linear interpolation): 99.
    np.testing.assert_allclose(heat[0, :100], np.arange(100.0) / 99.0, atol=1e-12)
    assert heat[0, 99] == 1.0 and heat[0, 100] == 1.0
    np.testing.assert_allclose(viz.to_heatmap(values, percentile=None)[0], values[0] / 1e6)
    # mostly zero: the 99th percentile is 0, so the maximum scales instead of dividing by zero
    sparse = np.zeros((10, 10))
    sparse[0, 0] = 4.0
    assert viz.to_heatmap(sparse).max() == 1.0 and viz.to_heatmap(np.zeros((3, 3))).max() == 0.0


def test_sign_modes() -> None:
    neg = -np.array([[1.0, 2.0], [3.0, 4.0]])
    assert np.array_equal(viz.to_heatmap(neg, "positive"), np.zeros((2, 2)))
    rgb = viz.heat_map(neg, "positive", cmap="viridis")
    np.testing.assert_allclose(rgb, np.broadcast_to(cmap_rgb("viridis", 0.0), (2, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(viz.to_heatmap(neg, "negative", percentile=None), [[0.25, 0.5], [0.75, 1.0]])
    np.testing.assert_allclose(viz.to_heatmap(neg, "absolute", percentile=None), [[0.25, 0.5], [0.75, 1.0]])
    mixed = np.array([[-2.0, 1.0], [0.0, 4.0]])
    np.testing.assert_allclose(viz.to_heatmap(mixed, "all", percentile=None), [[-0.5, 0.25], [0.0, 1.0]])
    assert np.array_equal(viz.to_heatmap(-mixed, "all"), -viz.to_heatmap(mixed, "all"))
    # diverging default centred at 0: value v is drawn as cmap((v + 1) / 2), -v mirrored around the centre
    rgb = viz.heat_map(mixed, "all", percentile=None)
    assert viz.default_cmap("all") == "RdBu_r" and viz.map_range("all") == (-1.0, 1.0)
    for (r, c), v in [((0, 0), -0.5), ((0, 1), 0.25), ((1, 0), 0.0), ((1, 1), 1.0)]:
        np.testing.assert_allclose(rgb[r, c], cmap_rgb("RdBu_r", (v + 1) / 2), atol=1e-12)
    assert viz.map_range("positive") == (0.0, 1.0) and viz.default_cmap("absolute") == "inferno"


def test_resize_is_bilinear_with_half_pixel_centres() -> None:
    small = np.array([[0.0, 1.0], [2.0, 3.0]])
    w = np.array([0.0, 0.25, 0.75, 1.0])  # source coordinate of each output pixel, clamped at the borders
    np.testing.assert_allclose(viz.resize_map(small, (4, 4)), 2 * w[:, None] + w[None, :], atol=1e-7)
    # a layer-resolution map over a larger image is resized before colouring
    rgb = viz.heat_map(small, percentile=None, cmap="gray", size=(4, 4))
    np.testing.assert_allclose(rgb[..., 0], (2 * w[:, None] + w[None, :]) / 3, atol=1.5 / 255)


# ---- views ------------------------------------------------------------------------------------------------------


def test_blended_overlay_pixels_exact() -> None:
    gray, alpha = 0.4, 0.3
    image = np.full((6, 8, 3), gray)
    out = viz.blended_heat_map(image, half_map(), cmap="viridis", alpha=alpha)
    assert out.shape == (6, 8, 3)
    left = (1 - alpha) * gray + alpha * cmap_rgb("viridis", 1.0)
    right = (1 - alpha) * gray + alpha * cmap_rgb("viridis", 0.0)
    np.testing.assert_allclose(out[:, :4], np.broadcast_to(left, (6, 4, 3)), atol=1e-6)
    np.testing.assert_allclose(out[:, 4:], np.broadcast_to(right, (6, 4, 3)), atol=1e-6)
    # in colour the image's own channels are kept
    colour = np.zeros((6, 8, 3))
    colour[..., 0] = 0.8
    out = viz.blended_heat_map(colour, half_map(), cmap="magma", alpha=0.5, grayscale=False)
    np.testing.assert_allclose(out[0, 0], 0.5 * np.array([0.8, 0, 0]) + 0.5 * cmap_rgb("magma", 1.0), atol=1e-6)
    with pytest.raises(CnnlensError, match="alpha"):
        viz.blended_heat_map(image, half_map(), alpha=1.5)


def test_masked_image_and_alpha_scaling_pixels() -> None:
    image = np.array([[[0.2, 0.4, 0.6], [1.0, 0.5, 0.0]], [[0.3, 0.3, 0.3], [0.9, 0.8, 0.7]]])
    attribution = np.array([[0.0, 2.0], [1.0, 4.0]])  # percentile=None -> weights 0, .5, .25, 1
    w = np.array([[0.0, 0.5], [0.25, 1.0]])[..., None]
    np.testing.assert_allclose(viz.masked_image(image, attribution, percentile=None), image * w, atol=1e-12)
    np.testing.assert_allclose(viz.masked_image(image, attribution, percentile=None)[0, 1], [0.5, 0.25, 0.0])
    white = viz.alpha_scaling(image, attribution, percentile=None)
    np.testing.assert_allclose(white[0, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(white[1, 0], 0.25 * 0.3 + 0.75 * 1.0)  # 0.825 in every channel
    black = viz.alpha_scaling(image, attribution, background="black", percentile=None)
    np.testing.assert_allclose(black, image * w, atol=1e-12)
    np.testing.assert_allclose(viz.alpha_scaling(image, attribution, background=0.5, percentile=None)[0, 1],
                               0.5 * np.array([1.0, 0.5, 0.0]) + 0.25)  # fmt: skip
    for f in (viz.masked_image, viz.alpha_scaling):
        with pytest.raises(CnnlensError, match="sign="):
            f(image, attribution, sign="all")
    with pytest.raises(CnnlensError, match="background"):
        viz.alpha_scaling(image, attribution, background="gray")


def test_original_image_conversions() -> None:
    u8 = np.array([[[0, 255, 51]]], dtype=np.uint8)
    np.testing.assert_allclose(viz.original_image(u8), [[[0.0, 1.0, 0.2]]])
    chw = torch.rand(3, 5, 7)
    np.testing.assert_allclose(viz.original_image(chw), chw.permute(1, 2, 0).numpy(), atol=1e-7)
    gray = np.linspace(0, 1, 6).reshape(2, 3)
    np.testing.assert_allclose(viz.original_image(gray), np.repeat(gray[..., None], 3, axis=2))
    with pytest.raises(CnnlensError, match="to_pixels"):
        viz.original_image(np.full((4, 4, 3), 2.5))
    with pytest.raises(CnnlensError, match="one image"):
        viz.original_image(np.zeros((2, 4, 4, 3)))


def test_colormaps_by_name_or_object_and_unknown_names() -> None:
    m = half_map()
    np.testing.assert_allclose(viz.heat_map(m, cmap="cividis"), viz.heat_map(m, cmap=matplotlib.colormaps["cividis"]))
    np.testing.assert_allclose(viz.heat_map(m, cmap="cividis")[0, 0], cmap_rgb("cividis", 1.0))
    with pytest.raises(CnnlensError, match="unknown matplotlib colormap"):
        viz.heat_map(m, cmap="no_such_map")
    with pytest.raises(CnnlensError, match="view must be one of"):
        viz.render("sketch", np.zeros((6, 8, 3)), m)


def test_draw_view_shows_the_rendered_view_and_its_colorbar() -> None:
    image = np.full((6, 8, 3), 0.5)
    fig, axes = plt.subplots(1, 2)
    shown = viz.draw_view(axes[0], image, half_map(left=1.0, right=-1.0), "heat", sign="all", colorbar=True)
    np.testing.assert_allclose(shown.get_array()[0, 0], cmap_rgb("RdBu_r", 1.0))
    np.testing.assert_allclose(shown.get_array()[0, -1], cmap_rgb("RdBu_r", 0.0))
    bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert len(bars) == 1
    assert bars[0].get_ylim() == (-1.0, 1.0)
    rgba = render(fig)
    for fy in (0.05, 0.3, 0.5, 0.95):  # the bar runs from +1 (top) to -1 through the colormap (fy from the top)
        np.testing.assert_allclose(pixel_at(fig, rgba, bars[0], 0.5, fy), cmap_rgb("RdBu_r", 1 - fy), atol=0.04)
    viz.draw_view(axes[1], image, half_map(), "masked", colorbar=True)
    assert fig.axes[-1].get_label() == "<colorbar>" and fig.axes[-1].get_ylim() == (0.0, 1.0)
    rgba = render(fig)
    np.testing.assert_allclose(pixel_at(fig, rgba, fig.axes[-1], 0.5, 0.02), [1.0] * 3, atol=0.03)  # gray: white
    plt.close(fig)


def test_draw_view_passes_every_option_to_render() -> None:
    image, m = np.linspace(0, 1, 6 * 8 * 3).reshape(6, 8, 3), half_map(left=1.0, right=-1.0)
    fig, ax = plt.subplots()
    opts = {"sign": "positive", "cmap": "cividis", "alpha": 0.3, "grayscale": False, "percentile": None}
    shown = viz.draw_view(ax, image, m, "blended", colorbar=True, **opts)
    np.testing.assert_allclose(shown.get_array(), viz.render("blended", image, m, **opts))
    assert not np.allclose(shown.get_array(), viz.render("blended", image, m))  # the options changed the picture
    bar = fig.axes[-1]
    assert bar.get_label() == "<colorbar>" and bar.get_ylim() == (0.0, 1.0)  # positive: (0, 1)
    assert bar._colorbar.cmap.name == "cividis"  # the colorbar follows the cmap option
    with pytest.raises(TypeError, match="sing"):
        viz.draw_view(ax, image, m, sing="all")
    plt.close(fig)


# ---- superpixels and boxes --------------------------------------------------------------------------------------


def test_superpixel_boundaries_mark_the_split_only() -> None:
    image = np.zeros((6, 8, 3))
    segments = np.zeros((6, 8), dtype=np.int64)
    segments[:, 4:] = 1
    out = viz.superpixel_boundaries(image, torch.tensor(segments)[None, None], color=(1.0, 0.0, 0.0), mode="thick")
    red = np.all(out == [1.0, 0.0, 0.0], axis=-1)
    assert red[:, 3:5].all() and not red[:, :3].any() and not red[:, 5:].any()
    assert np.array_equal(out[~red], np.zeros((int((~red).sum()), 3)))
    expanded = np.repeat(segments[None], 3, axis=0)  # a mask expanded over the channels is accepted
    assert np.array_equal(viz.superpixel_boundaries(image, expanded, color=(1, 0, 0), mode="thick"), out)
    with pytest.raises(CnnlensError, match="integer"):
        viz.superpixel_boundaries(image, segments.astype(float))
    with pytest.raises(CnnlensError, match="must match"):
        viz.superpixel_boundaries(image, segments[:, :5])


def test_bounding_box_of_the_bigger_blob() -> None:
    m = np.zeros((20, 30))
    m[2:5, 3:7] = 1.0  # 12 pixels, the maximum
    m[10:15, 15:21] = 0.8  # 30 pixels
    m[0, 29] = 0.3  # below half of the maximum
    assert viz.bounding_box(m) == (15, 10, 21, 15)
    assert viz.bounding_box(m, threshold=0.9) == (3, 2, 7, 5)
    assert viz.bounding_box(m, threshold=0.25) == (15, 10, 21, 15)
    # percentile over the 600 sorted values (557 zeros, one 0.3, 30 x 0.8, 12 x 1.0): the 95th is at index 569.05,
    # i.e. 0.8 (both blobs kept, the bigger wins); the 99th is at index 593.01, i.e. 1.0 (only the small blob)
    assert viz.bounding_box(m, percentile=95) == (15, 10, 21, 15)
    assert viz.bounding_box(m, percentile=99) == (3, 2, 7, 5)
    diagonal = np.zeros((6, 6))
    diagonal[[0, 1, 2, 3], [0, 1, 2, 3]] = 1.0  # 8-connected: one region of 4 pixels
    diagonal[5, 4:6] = 1.0
    assert viz.bounding_box(diagonal) == (0, 0, 4, 4)
    tie = np.zeros((5, 9))
    tie[1:3, 0:2], tie[1:3, 6:8] = 0.6, 1.0  # same size: the larger total evidence wins
    assert viz.bounding_box(tie) == (6, 1, 8, 3)
    # a 2x2 CAM resized to 4x4: only the top-left quadrant reaches half of the maximum (0.5625 at (1, 1))
    assert viz.bounding_box(np.array([[1.0, 0.0], [0.0, 0.0]]), size=(4, 4)) == (0, 0, 2, 2)
    assert viz.bounding_box(np.zeros((4, 4))) is None
    assert viz.bounding_box(-np.ones((4, 4)), sign="positive") is None
    assert viz.bounding_box(-m, sign="negative") == (15, 10, 21, 15)
    with pytest.raises(CnnlensError, match="not both"):
        viz.bounding_box(m, threshold=0.5, percentile=90)
    with pytest.raises(CnnlensError, match="sign="):
        viz.bounding_box(m, sign="all")


def test_draw_bounding_box_runs_along_pixel_edges() -> None:
    image = np.zeros((20, 30, 3))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)  # ~15 display pixels per image pixel
    ax.imshow(image, interpolation="nearest")
    rect = viz.draw_bounding_box(ax, (15, 10, 21, 15), color="lime", linewidth=3)
    assert rect.get_xy() == (14.5, 9.5) and (rect.get_width(), rect.get_height()) == (6, 5)
    rgba = render(fig)
    green = (rgba[..., 1] > 0.9) & (rgba[..., 0] < 0.2)
    rows, cols = np.nonzero(green)
    # the outline runs along the outer pixel edges: within 3 display pixels (a half-pixel shift would be ~7)
    to_px = ax.transData.transform
    (x0, y0), (x1, y1) = to_px((14.5, 9.5)), to_px((20.5, 14.5))
    assert abs(cols.min() - x0) <= 3 and abs(cols.max() - x1) <= 3
    assert abs(rows.min() - (rgba.shape[0] - y0)) <= 3 and abs(rows.max() - (rgba.shape[0] - y1)) <= 3  # y down
    viz.draw_bounding_box(ax, (0, 0, 2, 2), label="cam")
    assert [(t.get_text(), t.get_position()) for t in ax.texts] == [("cam", (-0.5, -0.5))]
    with pytest.raises(CnnlensError, match="no box"):
        viz.draw_bounding_box(ax, None)
    plt.close(fig)


# ---- panels and grids -------------------------------------------------------------------------------------------


def test_compare_panel_content(tmp_path: Path) -> None:
    gray, alpha = 0.4, 0.5
    image = np.full((48, 64, 3), gray)
    maps = {"saliency": half_map(48, 64), "grad_cam": np.ones((6, 8)), "occlusion": np.zeros((3, 48, 64))}
    top = [("cat", 0.2), ("dog", 0.7), ("fox", 0.1)]
    fig = viz.compare_panel(image, maps, top_k=top, true_label="cat", title="img 7", cmap="viridis")
    shown = image_axes(fig)
    assert len(shown) == 4
    assert [a.get_title() for a in shown] == ["image", "saliency", "grad_cam", "occlusion"]
    assert shown[0].get_position().height > 1.5 * shown[1].get_position().height  # the image is the large one
    bars = next(a for a in fig.axes if a.patches)
    assert [round(p.get_width(), 6) for p in bars.patches] == [0.7, 0.2, 0.1]  # sorted, most probable on top
    assert [t.get_text() for t in bars.get_yticklabels()] == ["dog", "cat", "fox"]
    assert [p.get_facecolor() for p in bars.patches][1] == GREEN
    assert [p.get_facecolor() for p in bars.patches][0] != GREEN
    head = fig._suptitle
    assert head.get_text() == "img 7   true: cat   predicted: dog" and to_rgba(head.get_color()) == RED
    rgba = render(fig)
    expect = (1 - alpha) * gray + alpha * cmap_rgb("viridis", 1.0)
    np.testing.assert_allclose(pixel_at(fig, rgba, shown[1], 0.25, 0.5), expect, atol=2 / 255)
    np.testing.assert_allclose(pixel_at(fig, rgba, shown[1], 0.75, 0.5), (1 - alpha) * gray + alpha *
                               cmap_rgb("viridis", 0.0), atol=2 / 255)  # fmt: skip
    np.testing.assert_allclose(pixel_at(fig, rgba, shown[0], 0.5, 0.5), [gray] * 3, atol=1 / 255)
    fig.savefig(tmp_path / "panel.png")
    saved = plt.imread(tmp_path / "panel.png")
    assert saved.shape[0] > 200 and len(np.unique(saved.reshape(-1, saved.shape[-1]), axis=0)) > 20
    plt.close(fig)
    predicted = [(1, "dog", 0.7), (0, "cat", 0.2)]  # Classifier.predict rows are accepted as they are
    right = viz.compare_panel(image, {"m": half_map(48, 64)}, top_k=predicted, true_label="dog")
    assert [p.get_width() for p in next(a for a in right.axes if a.patches).patches] == [0.7, 0.2]
    assert to_rgba(right._suptitle.get_color()) == GREEN and len(image_axes(right)) == 2
    plt.close(right)
    outside = viz.compare_panel(image, {"m": half_map(48, 64)}, top_k=top, true_label="owl", predicted_label="dog")
    assert all(p.get_facecolor() != GREEN for p in next(a for a in outside.axes if a.patches).patches)
    plt.close(outside)
    with pytest.raises(CnnlensError, match="maps is empty"):
        viz.compare_panel(image, {})
    with pytest.raises(CnnlensError, match="probability"):
        viz.compare_panel(image, maps, top_k=[("cat", 1.2)])


def test_method_grid_content() -> None:
    images = [np.full((16, 16, 3), 0.2), np.full((16, 16, 3), 0.9)]
    a = torch.zeros(2, 3, 16, 16)
    a[:, 0, :, :8] = 1.0  # left half has evidence in both images
    b = [np.ones((4, 4)), np.ones((4, 4))]
    fig = viz.method_grid(images, {"A": a, "B": b}, row_labels=["first", "second"], view="masked", title="grid")
    shown = image_axes(fig)
    assert len(shown) == 6
    assert [ax.get_title() for ax in shown[:3]] == ["original", "A", "B"]
    assert all(ax.get_title() == "" for ax in shown[3:])
    assert [shown[0].get_ylabel(), shown[3].get_ylabel()] == ["first", "second"]
    rgba = render(fig)
    np.testing.assert_allclose(pixel_at(fig, rgba, shown[4], 0.25, 0.5), [0.9] * 3, atol=1 / 255)  # 0.9 * 1
    np.testing.assert_allclose(pixel_at(fig, rgba, shown[4], 0.75, 0.5), [0.0] * 3, atol=1 / 255)  # 0.9 * 0
    np.testing.assert_allclose(pixel_at(fig, rgba, shown[2], 0.5, 0.5), [0.2] * 3, atol=1 / 255)
    plt.close(fig)
    with pytest.raises(CnnlensError, match="one per image"):
        viz.method_grid(images, {"A": a[:1]})
    with pytest.raises(CnnlensError, match="row_labels"):
        viz.method_grid(images, {"A": a}, row_labels=["x"])


def test_explanation_panel_keeps_its_signature() -> None:
    image = np.full((16, 16, 3), 0.5)
    fig = viz.explanation_panel(image, {"a": np.ones((3, 16, 16)), "b": np.ones((16, 16))}, [("cat", 0.9)], "t")
    assert len(image_axes(fig)) == 3 and [a.get_title() for a in image_axes(fig)] == ["t", "a", "b"]
    assert [a.get_label() for a in fig.axes].count("<colorbar>") == 1  # one scale for both maps
    assert [t.get_text().strip() for t in fig.axes[0].texts] == ["90.0%  cat"]
    expect = 0.45 * 0.5 + 0.55 * cmap_rgb("inferno", 1.0)  # its defaults: inferno, alpha 0.55, gray underneath
    np.testing.assert_allclose(fig.axes[2].images[0].get_array()[3, 3], expect, atol=1e-6)
    plt.close(fig)


def test_real_explanations_on_the_digits_model() -> None:
    import cnnlens
    from cnnlens.data import digits

    model = cnnlens.load_model("digits_cnn")
    data = digits("test")
    x = model.preprocess([data[i][0] for i in range(2)])
    maps = {m: cnnlens.explain(model, x, m).attributions for m in ("saliency", "grad_cam")}
    pixels = model.preprocessing.to_pixels(x)
    fig = viz.method_grid(list(pixels), maps, row_labels=[str(data[i][1]) for i in range(2)], view="heat")
    shown = image_axes(fig)
    assert len(shown) == 6 and [ax.get_title() for ax in shown[:3]] == ["original", "saliency", "grad_cam"]
    heat = viz.heat_map(maps["grad_cam"][1])
    np.testing.assert_allclose(shown[5].images[0].get_array(), heat)
    box = viz.bounding_box(maps["grad_cam"][0])
    assert box is not None and 0 <= box[0] < box[2] <= 32 and 0 <= box[1] < box[3] <= 32
    plt.close(fig)


def test_figure_layout_matches_the_saved_png_and_finds_maps_and_bars(tmp_path: Path) -> None:
    from PIL import Image

    image = np.full((16, 16, 3), 0.5)
    maps = {"a": half_map(16, 16), "b": -half_map(16, 16), "c": np.ones((4, 4))}
    fig = viz.compare_panel(image, maps, top_k=[("cat", 0.6), ("dog", 0.3)], sign="all")
    layout = viz.figure_layout(fig, 96)
    fig.savefig(tmp_path / "p.png", dpi=96, bbox_inches="tight")
    with Image.open(tmp_path / "p.png") as im:
        assert abs(im.size[0] - layout["size"][0]) <= 1 and abs(im.size[1] - layout["size"][1]) <= 1
    assert len(layout["maps"]) == 3 and len(layout["colorbars"]) == 1  # the photo itself is not a map
    bar = layout["colorbars"][0]
    assert all(bar[0] >= m[2] for m in layout["maps"])  # the bar is to the right of every map
    assert min(t[4] for t in layout["texts"]) >= viz.LABEL_PT  # nothing set smaller than 9 points
    words = [t.get_text() for t in fig.findobj(plt.Text)]
    assert viz.scale_words("all")[0] in words and {"for", "against"} <= set(words)
    assert viz.scale_words("positive")[0].startswith("evidence for the class")
    assert viz.scale_words("absolute", percentile=None)[0].endswith("(share of its maximum)")
    plt.close(fig)
    with pytest.raises(CnnlensError, match="sign must be"):
        viz.scale_words("up")
