"""Imports every metric module so their ``@register_metric`` decorators run (the table order: FAMILIES)."""

from . import _curves, _descriptive, _faithfulness, _localisation, _sanity  # noqa: F401
