"""Quality metrics: deletion, insertion and ROAD curves."""

from __future__ import annotations
