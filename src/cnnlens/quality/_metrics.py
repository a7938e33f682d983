"""Imports every metric module so their ``@register_metric`` decorators run (one line per module)."""
