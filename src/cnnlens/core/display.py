"""Notebook display for cnnlens results: in Jupyter an `Explanation`, a `Score`, a `Scorecard` or an `Evaluation`
shows as a small table and a picture (``_repr_html_`` / ``_repr_png_``); ``.plot()`` returns the matplotlib
Figure, ``.show()`` displays it (in a notebook) and returns it.

Matplotlib is imported only when a picture is made.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def figure_png(fig: Any, dpi: int = 96) -> bytes:
    """PNG bytes of a matplotlib Figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def html_table(rows: list[tuple[str, str]] | list[list[str]], header: list[str] | None = None) -> str:
    """A small escaped HTML table (cells are text)."""
    head = "" if header is None else "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="cnnlens">{head}{body}</table>'


class Displayable:
    """Mixin: subclasses implement ``plot()`` (a Figure) and ``_summary()`` ((label, value) rows, or an HTML
    table string via ``_summary_html()``)."""

    def plot(self, *args: Any, **options: Any) -> Any:
        """The object as a matplotlib Figure (each subclass names the options it takes)."""
        raise NotImplementedError

    def _summary(self) -> list[tuple[str, str]]:
        return []

    def _summary_html(self) -> str:
        rows = self._summary()
        return html_table(rows) if rows else ""

    def _repr_png_(self) -> bytes:
        return figure_png(self.plot())

    def _repr_html_(self) -> str:
        picture = base64.b64encode(self._repr_png_()).decode("ascii")
        title = html.escape(type(self).__name__)
        return (
            f'<div class="cnnlens"><strong>{title}</strong>{self._summary_html()}'
            f'<img src="data:image/png;base64,{picture}" alt="{title}" style="max-width: 100%"></div>'
        )

    def show(self, **options: Any) -> Any:
        """Display ``plot(**options)`` in a notebook (IPython) and return the Figure; outside a notebook only
        return it (save it with ``fig.savefig(path)``)."""
        fig = self.plot(**options)
        try:
            from IPython import get_ipython
            from IPython.display import Image, display
        except ImportError:
            return fig
        if get_ipython() is not None:
            display(Image(figure_png(fig)))
        return fig
