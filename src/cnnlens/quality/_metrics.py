"""Imports every metric module so their ``@register_metric`` decorators run (one line per module)."""

from . import _curves, _descriptive, _faithfulness, _localisation, _sanity  # noqa: F401
