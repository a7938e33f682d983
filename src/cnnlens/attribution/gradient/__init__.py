"""Gradient methods. Importing this package registers them."""

from . import deeplift, gradient_shap, integrated_gradients, simple  # noqa: F401
