"""Imports every metric module so their ``@register_metric`` decorators run; this order is the table's order."""
# isort: skip_file

from . import _faithfulness  # noqa: F401  infidelity, sensitivity_max, completeness
from . import _curves  # noqa: F401  deletion, insertion, road
from . import _localisation  # noqa: F401  pointing_game
from . import _sanity  # noqa: F401  randomization_check
from . import _descriptive  # noqa: F401  class_discrimination, detail
