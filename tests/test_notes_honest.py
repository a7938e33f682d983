"""Honest notes: "best", "agree" and "differ" only beyond the uncertainty over images and seeds; the same
computation under two names is found and named once; where the evidence lies is said from the maps; data without
mistakes get their own texts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlens.report import agreement_claims, best_note, lead, same_computation
from cnnlens.report._claims import paired
from cnnlens.report._conclusions import mistakes_summary, trust_summary
from cnnlens.report._evidence import main_part, part_shares, stroke_share, where_note


def test_paired_error_is_the_standard_error_of_the_differences() -> None:
    a, b = np.array([0.9, 0.8, 0.7, 0.95]), np.array([0.85, 0.8, 0.6, 0.9])
    d = a - b
    mean, error, n, seeds = paired(a, b)
    assert (n, seeds) == (4, 1) and mean == pytest.approx(d.mean())
    assert error == pytest.approx(d.std(ddof=1) / 2)  # sd / sqrt(4), computed by hand
    # two seeds: the per-image means over seeds vary over images, the per-seed means over seeds (module doc)
    a2, b2 = np.stack([a, a + 0.02]), np.stack([b, b])
    mean, error, n, seeds = paired(a2, b2)
    per_image, per_seed = (a2 - b2).mean(0), (a2 - b2).mean(1)
    assert (n, seeds) == (4, 2) and mean == pytest.approx(per_image.mean())
    assert error == pytest.approx(math.sqrt(per_image.var(ddof=1) / 4 + per_seed.var(ddof=1) / 2))
    assert paired([0.5], [0.4])[1] == math.inf  # one image, one seed: nothing to measure the spread with
    assert paired([0.5, np.nan, 0.6], [0.4, 0.1, 0.7])[2] == 2  # images without both values are left out


def test_no_best_within_the_noise_and_a_clear_best_beyond_it() -> None:
    base = np.array([0.95, 0.99, 0.93, 0.97, 0.96, 0.98, 0.94, 0.92])
    # the case: means 0.9872 and 0.9866, per-image differences of +-0.01 around a 0.0006 gap
    close = {"grad_cam": np.array([0.9972, 0.9772, 0.9972, 0.9772]), "occlusion": np.array([0.9866] * 4)}
    found = lead(close, higher_is_better=True)
    assert found is not None and found.leader == "grad_cam" and not found.clear
    assert found.difference == pytest.approx(0.0006) and found.error == pytest.approx(0.01 / 2 * 2 / math.sqrt(3))
    text = best_note("insertion", close, True)
    assert text.startswith("On insertion no method is clearly best") and "does best" not in text
    clear = {"grad_cam": base + 0.05, "occlusion": base, "saliency": base - 0.1}
    found = lead(clear, higher_is_better=True)
    assert found.leader == "grad_cam" and found.runner_up == "occlusion" and found.clear
    assert best_note("insertion", clear, True).startswith("On insertion (higher is better) Grad-CAM does best: ")
    lower = best_note("deletion", {"a": [0.1, 0.2, 0.15], "b": [0.3, 0.4, 0.35]}, False)
    assert lower.startswith("On deletion (lower is better) a does best: 0.15 against 0.35 for b")
    assert "no method is clearly best" in best_note("detail", {"a": [0.5], "b": [0.4]}, True)  # one image
    assert "cannot be measured on one image" in best_note("detail", {"a": [0.5], "b": [0.4]}, True)
    # seeds add their own spread: a lead that is clear over one seed's images is not once the seeds disagree
    one_seed = {"a": np.stack([base + 0.01]), "b": np.stack([base])}
    assert lead(one_seed, True).clear
    seeds = {"a": np.stack([base + 0.01, base - 0.008, base + 0.02]), "b": np.stack([base, base, base])}
    assert not lead(seeds, True).clear


def test_agree_and_differ_only_beyond_chance() -> None:
    chance = 0.1
    per_image = {
        ("grad_cam", "occlusion"): np.array([0.55, 0.6, 0.5, 0.58]),  # far above chance, steadily
        ("saliency", "occlusion"): np.array([0.05, 0.2, 0.08, 0.1]),  # about chance
        ("saliency", "grad_cam"): np.array([0.3, 0.05, 0.4, 0.1]),  # noisy
    }
    families = {"grad_cam": "cam", "occlusion": "perturbation", "saliency": "gradient"}
    said = agreement_claims(per_image, chance, families)
    assert said[0].startswith("Of methods from different families, Grad-CAM and occlusion agree most: 56%")
    assert said[1].startswith("Saliency and occlusion differ most: 11%") and "no more than chance" in said[1]
    flat = {("a", "b"): np.array([0.12, 0.08, 0.11, 0.09]), ("a", "c"): np.array([0.1, 0.1, 0.05, 0.12])}
    assert agreement_claims(flat, chance)[0].startswith("No two methods agree clearly more than chance")
    high = {("a", "b"): np.array([0.8, 0.82, 0.79]), ("a", "c"): np.array([0.6, 0.62, 0.58])}
    assert agreement_claims(high, chance)[1].startswith("Even the least agreeing pair, a and c, shares 60%")


def test_the_same_computation_is_found_and_named_once(tmp_path) -> None:
    import torch

    import cnnlens
    from test_contract import C, H, W, _model

    model, x = _model().eval(), torch.randn(2, C, H, W, generator=torch.Generator().manual_seed(0))
    maps = {
        "occlusion": cnnlens.explain(model, x, "occlusion", window=4, stride=4).attributions.numpy(),
        "feature_ablation": cnnlens.explain(model, x, "feature_ablation", mask="grid:4").attributions.numpy(),
        "overlapping": cnnlens.explain(model, x, "occlusion", window=4, stride=2).attributions.numpy(),
        "saliency": cnnlens.explain(model, x, "saliency").attributions.numpy(),
    }
    assert same_computation(maps) == [["occlusion", "feature_ablation"]]  # windows without overlap = a grid
    from cnnlens.report import MethodRun
    from cnnlens.report._methods import cost_table, duplicates_note, merge_duplicates

    info = {m: MethodRun(seconds=1.0, passes=2, options={}, relative_delta=None) for m in maps}
    merged = merge_duplicates(maps, info)
    assert list(merged) == ["overlapping", "saliency", "occlusion = feature ablation"]
    assert np.array_equal(merged["occlusion = feature ablation"], maps["occlusion"])
    assert duplicates_note(info).startswith("occlusion = feature ablation give identical maps on every image")
    notes = {r["method"]: r["note"] for r in cost_table(info, 2)}
    assert notes["feature ablation"].startswith("the same computation as occlusion here")


def test_where_the_evidence_lies_in_words() -> None:
    w = np.zeros((9, 9))
    w[0:3, 6:9] = 3.0  # upper right
    w[4, 4] = 1.0
    assert main_part(w) == "upper right" and part_shares(w)[0, 2] == pytest.approx(27 / 28)
    ink = np.zeros((9, 9, 3))
    ink[0:3, 6:9] = 1.0  # a bright stroke exactly where the evidence is
    assert stroke_share(ink, w) == pytest.approx(27 / 28)
    assert stroke_share(np.random.default_rng(0).uniform(size=(9, 9, 3)), w) is None  # a colour photo
    centre = np.zeros((9, 9))
    centre[3:6, 3:6] = 1.0
    text = where_note("3", "9", [(ink, w), (ink, w), (ink, centre)], [(ink, centre)], methods=5)
    assert text == (
        "For 2 of 3 misread 3s the evidence for 9 lies mostly in the upper right of the image, 64% of it on the "
        "strokes; in correctly read 9s it lies instead mostly in the centre (5 methods' maps combined)."
    )  # strokes: (27/28 + 27/28 + 0) / 3 = 64.3%
    off = where_note("3", "9", [(ink, centre)])
    assert off == "For the misread 3 the evidence for 9 lies mostly in the centre of the image, 100% of it off the " \
        "strokes (on the background)."  # fmt: skip


def test_texts_for_data_without_mistakes_and_the_trust_summary() -> None:
    assert mistakes_summary([], 0, 40) == (
        "It makes no mistakes on these 40 images, so the maps above show what its right answers rest on, not why it "
        "fails."
    )
    assert mistakes_summary([("3", "9", 22), ("4", "0", 11)], 173, 360) == (
        "Its most common mistake is reading 3 as 9 (22 of its 173 errors), then 4 as 0 (11)."
    )
    leads = {
        "deletion": lead({"grad_cam": [0.1, 0.12, 0.11], "saliency": [0.3, 0.33, 0.31]}, False),
        "insertion": lead({"grad_cam": [0.5, 0.9, 0.2], "saliency": [0.6, 0.7, 0.3]}, True),
    }
    assert trust_summary(leads, 3) == (
        "Judged on these 3 images, the maps to trust most are Grad-CAM's on deletion (ahead beyond the "
        "uncertainty); on insertion no method is clearly ahead."
    )
