"""Loading image classifiers (bundled, TorchScript, state dict), finding their layers and cutting them at one."""

from cnnlens.models._bundled import bundled_models
from cnnlens.models._classifier import Classifier, InputRangeWarning, Preprocessing
from cnnlens.models._classifier import inputs_checked as inputs_checked
from cnnlens.models._cut import Cut, State, cut_at
from cnnlens.models._digits import DigitsCNN, digits_cnn
from cnnlens.models._gap import GapHead as GapHead
from cnnlens.models._gap import gap_head as gap_head
from cnnlens.models._graph import Untraceable as Untraceable
from cnnlens.models._heads import class_count as class_count
from cnnlens.models._heads import class_probabilities as class_probabilities
from cnnlens.models._heads import class_rows as class_rows
from cnnlens.models._heads import class_scores as class_scores
from cnnlens.models._heads import default_class_names as default_class_names
from cnnlens.models._incremental import Incremental as Incremental
from cnnlens.models._layers import as_module as as_module
from cnnlens.models._layers import default_layer, get_layer, last_conv_layer, layer_names
from cnnlens.models._layers import probed_default_layer as probed_default_layer
from cnnlens.models._layers import probed_last_conv as probed_last_conv
from cnnlens.models._loading import load_model
from cnnlens.models._outputs import SelectOutput
from cnnlens.models._outputs import describe as describe_output  # noqa: F401 - what the engine reports

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = [
    "Classifier",
    "Cut",
    "DigitsCNN",
    "InputRangeWarning",
    "Preprocessing",
    "SelectOutput",
    "State",
    "bundled_models",
    "cut_at",
    "default_layer",
    "digits_cnn",
    "get_layer",
    "last_conv_layer",
    "layer_names",
    "load_model",
]
