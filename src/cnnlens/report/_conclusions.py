"""The report's last section, "What this means": a short summary in words of what the numbers and the maps showed,
made from the numbers the report computed (not a repeat of the notes above it), then what to do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._claims import Lead
from ._notes import _join, method_name, pct


def accuracy_summary(accuracies: Mapping[str, float], focus: str, no_information_rate: float, images: int) -> str:
    """``On the field digits (360 images) the model is right 51.9% of the time, against 97.8% on the test digits;
    always answering the most common class would give 10.3%.``"""
    text = f"On the {focus} ({images} images) the model is right {pct(accuracies[focus])} of the time"
    others = [f"{pct(a)} on the {n}" for n, a in accuracies.items() if n != focus]
    if others:
        text += f", against {_join(others)}"
    return text + f"; always answering the most common class would give {pct(no_information_rate)}."


def mistakes_summary(pairs: Sequence[tuple[str, str, int]], errors: int, images: int) -> str:
    """The main mistakes in one sentence, or that there are none (and what the explanations then show)."""
    if errors == 0:
        return (
            f"It makes no mistakes on these {images} images, so the maps above show what its right answers rest "
            "on, not why it fails."
        )
    if not pairs:
        return f"It makes {errors} mistakes."
    (t, p, n), rest = pairs[0], pairs[1:]
    text = f"Its most common mistake is reading {t} as {p} ({n} of its {errors} errors)"
    if rest:
        text += ", then " + _join([f"{a} as {b} ({c})" for a, b, c in rest])
    return text + "."


def trust_summary(leads: Mapping[str, Lead | None], images: int) -> str | None:
    """Which quality columns have a clear leader and which do not, in one sentence."""
    clear = [(c, lead) for c, lead in leads.items() if lead is not None and lead.runner_up is not None and lead.clear]
    unclear = [c for c, lead in leads.items() if lead is not None and lead.runner_up is not None and not lead.clear]
    if not clear and not unclear:
        return None
    parts = []
    if clear:
        parts.append(
            "the maps to trust most are "
            + _join([f"{method_name(lead.leader)}'s on {c}" for c, lead in clear])
            + " (ahead beyond the uncertainty)"
        )
    if unclear:
        parts.append(f"on {_join(unclear)} no method is clearly ahead")
    text = f"Judged on these {images} images, " + "; ".join(parts) + "."
    return text[0].upper() + text[1:]


def conclusions(
    accuracies: Mapping[str, float],
    focus: str,
    ev: Any,
    *,
    where: str | None,
    inside: str | None,
    leads: Mapping[str, Lead | None],
    explained_images: int,
) -> list[str]:
    """The "What this means" sentences, in the order of the story: how good (``accuracies`` per data set, ``ev``
    the evaluation of the data set called ``focus``), which mistakes, what the maps showed (``where``), what the
    inside shows (``inside``), which maps to trust (``leads``, judged on ``explained_images`` images)."""
    errors = int((ev.y_true != ev.y_pred).sum())
    said: list[str | None] = [
        accuracy_summary(accuracies, focus, ev.no_information_rate, len(ev.y_true)),
        mistakes_summary(ev.confused_pairs(3), errors, len(ev.y_true)),
    ]
    if where:
        said.append(f"What the maps showed: {where[0].lower()}{where[1:]}")
    if inside:
        said.append(inside)
    said.append(trust_summary(leads, explained_images))
    return [s for s in said if s]
