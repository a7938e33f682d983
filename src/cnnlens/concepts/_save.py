"""Writing a class's concepts: the gallery figure, a JSON summary, and one image in concepts per image given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.files import OutputFolder, output_folder, save_figure, write_json
from ._extract import Concepts
from ._local import explain_image

if TYPE_CHECKING:
    import torch

    from ..data import ImageInput


def summary(concepts: Concepts) -> dict[str, object]:
    """What the JSON file holds: the class, layer, fidelity, and per concept its importance and typical crops."""
    return {
        "class": concepts.class_name,
        "class_index": concepts.class_index,
        "layer": concepts.layer,
        "rectified": concepts.rectified,
        "images": len(concepts.inputs),
        "fidelity": round(concepts.fidelity, 6),
        "agreement": round(concepts.agreement, 6),
        "reconstruction_error": round(concepts.reconstruction_error, 6),
        "designs": concepts.designs,
        "seed": concepts.seed,
        "seconds": {k: round(v, 3) for k, v in concepts.seconds.items()},
        "concepts": [
            {
                "concept": c,
                "importance": round(float(concepts.importance[c]), 6),
                "typical_crops": [
                    {
                        "image": concepts.ids[int(b[0])],
                        "top": int(b[1]),
                        "left": int(b[2]),
                        "size": [int(b[3]), int(b[4])],
                    }
                    for b in concepts.boxes[concepts.typical[c]]
                ],
            }
            for c in range(concepts.n_concepts)
        ],
    }


def save_concepts(
    concepts: Concepts, out: str | os.PathLike[str] | OutputFolder, images: Sequence[ImageInput | torch.Tensor] = ()
) -> dict[str, Path]:
    """Write ``gallery.png``, ``concepts.json`` and, for each of ``images``, ``image_<i>.png`` (the image in the
    concepts) into the folder ``out``, held as one run (see ``cnnlens.core.files.output_folder``); returns the paths."""
    from ..viz import concept_gallery_figure, concept_overlay_figure

    with output_folder(out, "concepts", class_=concepts.class_name, layer=concepts.layer) as folder:
        written = {
            "gallery": save_figure(concept_gallery_figure(concepts), folder.file("gallery.png")),
            "summary": write_json(folder.file("concepts.json"), summary(concepts)),
        }
        for i, image in enumerate(images):
            fig = concept_overlay_figure(explain_image(concepts, image))
            written[f"image_{i}"] = save_figure(fig, folder.file(f"image_{i}.png"))
    return written
