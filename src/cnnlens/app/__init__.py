"""The local web app: browse a store's predictions and explanations, and explain more on demand.

``cnnlens view STORE`` (or `serve`) serves it on 127.0.0.1: an overview (accuracy, per-class metrics, a confusion
matrix whose cells open their images), an image grid (filters, sorting, pages), one image with every stored map
side by side and any registered method computed on demand, and the confused pairs. Starlette and uvicorn serve it;
pages, styles and scripts ship inside the package (nothing is fetched from the network).
"""

from ._fill import start_predictions as start_predictions
from ._security import new_token as new_token
from ._serve import create_app, running, serve

# Besides __all__, the names imported above as themselves ("x as x") are what the other cnnlens packages use.
__all__ = ["create_app", "new_token", "running", "serve"]
