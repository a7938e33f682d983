"""Quality metrics: pointing game."""

from __future__ import annotations
