"""Quality metrics: infidelity, sensitivity_max and completeness."""

from __future__ import annotations
