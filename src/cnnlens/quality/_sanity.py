"""Quality metrics: model-parameter randomization check."""

from __future__ import annotations
