"""Quality metrics: class discrimination and detail."""

from __future__ import annotations
