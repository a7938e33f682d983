"""`Report`: sections of figures, tables, notes and text, rendered by Jinja2 into one self-contained HTML file."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from matplotlib.figure import Figure

from ..core.errors import CnnlensError
from ..core.files import write_text

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise CnnlensError("Not a PNG image; give a matplotlib Figure or the path of a .png file.")
    return struct.unpack(">II", data[16:24])


def _figure_png(fig: Figure | str | os.PathLike[str], dpi: int, palette: bool) -> tuple[bytes, dict[str, Any]]:
    """PNG bytes of a Figure (closed afterwards; with ``palette``, reduced to 256 colours when that is smaller:
    photo overlays shrink about 4x) or of a PNG file (as it is), and the figure's layout (`figure_layout`: where
    its maps, colour bars and labels are; empty for a file)."""
    if isinstance(fig, Figure):
        import matplotlib.pyplot as plt
        from PIL import Image

        from ..viz import figure_layout

        buffer = io.BytesIO()
        try:
            if fig.get_layout_engine() is None:  # cnnlens figures lay themselves out; others are tightened here
                fig.tight_layout()
            fig.set_dpi(dpi)
            fig.savefig(buffer, format="png", dpi=dpi)
            layout = figure_layout(fig, dpi, tight=False, drawn=True)
        finally:
            plt.close(fig)
        data = buffer.getvalue()
        if palette:
            with Image.open(io.BytesIO(data)) as im:
                small = io.BytesIO()
                im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, kmeans=1).save(small, format="PNG")
            if small.tell() < len(data):
                data = small.getvalue()
        return data, layout
    if isinstance(fig, (str, os.PathLike)):
        path = Path(fig)
        if not path.is_file():
            raise CnnlensError(f"Figure file {str(path)!r} does not exist; give a matplotlib Figure or a PNG path.")
        return path.read_bytes(), {}
    raise CnnlensError(f"A figure must be a matplotlib Figure or a PNG path; got {type(fig).__name__}.")


def _cell(value: Any) -> str:
    """Table cell text: floats to 4 significant digits, NaN/None as a dash, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        v = float(value)
        return "–" if math.isnan(v) else f"{v:.4g}"
    return str(value)


@dataclass(frozen=True)
class EmbeddedFigure:
    """One figure of a section: a PNG as base64, its size in pixels, its caption and its layout (`figure_layout`
    as JSON; empty for a PNG file) with the number of maps in it."""

    data: str
    width: int
    height: int
    caption: str
    layout: str
    maps: int


@dataclass(frozen=True)
class FigureRow:
    """Consecutive figures, shown side by side."""

    entries: tuple[EmbeddedFigure, ...]
    kind: ClassVar[str] = "figures"


@dataclass(frozen=True)
class TableBlock:
    """A table: its cells as text, row by row, its column titles and caption."""

    rows: list[list[str]]
    columns: list[str]
    caption: str
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class NotesBlock:
    """A highlighted list of sentences."""

    entries: list[str]
    kind: ClassVar[str] = "notes"


@dataclass(frozen=True)
class WordsBlock:
    """A glossary: (term, meaning) pairs."""

    entries: list[tuple[str, str]]
    kind: ClassVar[str] = "words"


@dataclass(frozen=True)
class TextBlock:
    """A paragraph."""

    text: str
    kind: ClassVar[str] = "text"


Block = FigureRow | TableBlock | NotesBlock | WordsBlock | TextBlock


class Section:
    """One section of a `Report`; its methods add blocks in order and return the section (for chaining)."""

    def __init__(self, title: str, intro: str, id: str, *, dpi: int, palette: bool) -> None:
        self.title = title
        self.intro = intro
        self.id = id
        self.blocks: list[Block] = []
        self._dpi = dpi
        self._palette = palette

    def __repr__(self) -> str:
        return f"Section({self.title!r}, blocks={len(self.blocks)})"

    def figure(self, fig: Figure | str | os.PathLike[str], caption: str = "", dpi: int | None = None) -> Section:
        """Embed a matplotlib Figure (saved as PNG in memory at ``dpi``, default the report's, then closed) or a
        PNG file as a ``data:`` URI. A Figure's layout (its maps, colour bars and labels, in PNG pixels) goes into
        the image's ``data-layout`` attribute, so that a browser can check what a reader sees."""
        data, layout = _figure_png(fig, int(dpi or self._dpi), self._palette)
        width, height = _png_size(data)
        item = EmbeddedFigure(
            data=base64.b64encode(data).decode("ascii"),
            width=width,
            height=height,
            caption=caption,
            layout=json.dumps(layout, separators=(",", ":")) if layout else "",
            maps=len(layout.get("maps", [])),
        )
        last = self.blocks[-1] if self.blocks else None
        if isinstance(last, FigureRow):  # consecutive figures sit side by side
            self.blocks[-1] = FigureRow((*last.entries, item))
        else:
            self.blocks.append(FigureRow((item,)))
        return self

    def table(
        self,
        rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
        columns: Sequence[str] | None = None,
        caption: str = "",
    ) -> Section:
        """A table from dict rows (columns: ``columns`` or the keys in first-seen order) or list rows."""
        items = list(rows)
        dicts = [r for r in items if isinstance(r, Mapping)]
        if items and len(dicts) == len(items):
            if columns is None:
                columns = list(dict.fromkeys(k for r in dicts for k in r))
            cells = [[_cell(r.get(c)) for c in columns] for r in dicts]
        elif all(isinstance(r, Sequence) and not isinstance(r, str) for r in items):
            cells = [[_cell(v) for v in r] for r in items]
            width = len(columns) if columns is not None else (len(cells[0]) if cells else 0)
            bad = [i for i, r in enumerate(cells) if len(r) != width]
            if bad:
                raise CnnlensError(f"Table row {bad[0]} has {len(cells[bad[0]])} cells; expected {width}.")
        else:
            raise CnnlensError("Table rows must all be dicts or all be lists of cells.")
        self.blocks.append(TableBlock(rows=cells, columns=[str(c) for c in columns or []], caption=caption))
        return self

    def notes(self, notes: Sequence[str | None]) -> Section:
        """A highlighted list of short plain-language sentences (empty lists add nothing; ``None`` entries, notes
        with nothing to say, are skipped)."""
        if isinstance(notes, str):
            raise CnnlensError("notes() takes a list of sentences; use text() for one paragraph.")
        items = [str(n) for n in notes if n]
        if items:
            self.blocks.append(NotesBlock(items))
        return self

    def words(self, entries: Mapping[str, str] | Sequence[tuple[str, str]]) -> Section:
        """A glossary: each term (a column, a method, a word) with what it means in plain words."""
        items = list(entries.items()) if isinstance(entries, Mapping) else [tuple(e) for e in entries]
        if any(len(e) != 2 for e in items):
            raise CnnlensError("words() takes a mapping term -> meaning, or (term, meaning) pairs.")
        if items:
            self.blocks.append(WordsBlock([(str(t), str(m)) for t, m in items]))
        return self

    def text(self, text: str) -> Section:
        """A paragraph of text."""
        self.blocks.append(TextBlock(str(text)))
        return self


def _slug(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "section"


class Report:
    """A report: a title and sections; ``write(path)`` renders one self-contained HTML file.

    ``Report("Digits model").section("Overview", intro="...").figure(fig, "caption").notes([...])``. Figures
    are drawn at ``dpi`` (96: one point of type is one point on the page when the figure is shown at its size);
    ``palette=True`` stores them with 256 colours when that makes the file smaller.
    """

    def __init__(self, title: str, subtitle: str = "", dpi: int = 96, palette: bool = True) -> None:
        self.title = str(title)
        self.subtitle = str(subtitle)
        self.sections: list[Section] = []
        self._dpi = int(dpi)
        self._palette = bool(palette)

    def __repr__(self) -> str:
        return f"Report({self.title!r}, sections={len(self.sections)})"

    def section(self, title: str, intro: str = "") -> Section:
        """Append a section (its id, used by the table of contents, is made unique from the title)."""
        base = _slug(str(title))
        used = {s.id for s in self.sections}
        sid, k = base, 2
        while sid in used:
            sid, k = f"{base}-{k}", k + 1
        s = Section(str(title), str(intro), sid, dpi=self._dpi, palette=self._palette)
        self.sections.append(s)
        return s

    def to_html(self) -> str:
        """The report as one HTML document (autoescaped: text and captions never become markup)."""
        from .._version import __version__

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("cnnlens.report", "templates"),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        template = env.get_template("report.html.j2")
        return template.render(title=self.title, subtitle=self.subtitle, sections=self.sections, version=__version__)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the HTML file (a folder path gets ``report.html`` inside it) atomically: readers see the old file
        or the new one, never half of one; a symlink at ``path`` is refused. Returns the file's path."""
        path = Path(path)
        if path.is_dir() or path.suffix.lower() not in (".html", ".htm"):
            path = path / "report.html"
        return write_text(path, self.to_html())
