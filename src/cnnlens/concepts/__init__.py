"""Concepts: what a class means to the model, as parts of images.

* :func:`extract` — the concepts a model uses for one class (CRAFT, Fel et al. 2023; ICE, Zhang et al. 2021): NMF
  of a layer's non-negative activations on the class's images and crops, concept maps, typical crops, importance
  (total Sobol indices of concept masks, evaluated with the model cut at the layer) and fidelity.
* :func:`explain_image` / :func:`explain_error` — one image in a class's concepts: where each is and how much it
  contributes; for an error, the wrong class's concepts it showed and the true class's concepts it lacked.
* :func:`tcav` — does a user's concept (example images) push the model towards a class? (Kim et al. 2018).
* :func:`sobol_total` — the total Sobol indices estimator the importance uses.
"""

from ._extract import MIN_IMAGES as MIN_IMAGES
from ._extract import Concepts, extract
from ._inputs import class_index as class_index
from ._local import ErrorConcepts, ImageConcepts, explain_error, explain_image
from ._save import save_concepts as save_concepts
from ._sobol import sobol_total
from ._tcav import TCAV, tcav

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = [
    "TCAV",
    "Concepts",
    "ErrorConcepts",
    "ImageConcepts",
    "explain_error",
    "explain_image",
    "extract",
    "sobol_total",
    "tcav",
]
