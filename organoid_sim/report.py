"""A self-contained HTML report: headings, text, tables and matplotlib figures embedded as base64 PNG.

::

    from organoid_sim.report import Report

    rep = Report("DIV12 well D1")
    rep.add_text("Spontaneous activity, 16 channels.")
    rep.add_table({"rate (Hz)": 1.2, "bursts / min": 9.5}, caption="Summary")
    rep.add_figure(fig, caption="Raster")       # a matplotlib Figure (closed after embedding)
    path = rep.save("demo_out/report.html")     # atomic write; one file, no side files

Everything is escaped with :func:`html.escape`; the file opens in any browser without a network.
"""

from __future__ import annotations

import base64
import html
import io
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .atomic import atomic_write_bytes, atomic_write_text

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #446; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccd; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccd; padding: .25em .6em; text-align: right; }
th { background: #eef; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; font-weight: bold; text-align: left; padding: .3em 0; }
figure { margin: 1em 0; } figcaption { font-size: .9em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6fa; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { color: #844; }
"""


def format_value(v: Any, digits: int = 4) -> str:
    """A table cell as text: floats with ``digits`` significant digits, None as an em dash."""
    if v is None:
        return "\u2014"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}"
    if isinstance(v, numbers.Real):
        return f"{float(v):.{digits}g}"
    return str(v)


def figure_to_png_base64(fig, dpi: int = 110) -> str:
    """Render a matplotlib Figure to PNG and return it base64-encoded (ASCII)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class Report:
    """An HTML report built section by section (see the module docstring)."""

    def __init__(self, title: str) -> None:
        self.title = str(title)
        self._parts: list[str] = []

    def add_heading(self, text: str, level: int = 2) -> "Report":
        """A section heading (``level`` 2..4)."""
        level = min(max(int(level), 2), 4)
        self._parts.append(f"<h{level}>{html.escape(str(text))}</h{level}>")
        return self

    def add_text(self, text: str, *, note: bool = False) -> "Report":
        """A paragraph of plain text (escaped); ``note=True`` renders it as a warning."""
        cls = ' class="note"' if note else ""
        self._parts.append(f"<p{cls}>{html.escape(str(text))}</p>")
        return self

    def add_pre(self, text: str) -> "Report":
        """Preformatted text (e.g. the output of ``describe``)."""
        self._parts.append(f"<pre>{html.escape(str(text))}</pre>")
        return self

    def add_table(self, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, caption: str | None = None,
                  columns: Sequence[str] | None = None, index: str | None = None) -> "Report":
        """A table from a mapping (two columns: name, value) or from a list of row mappings
        (columns: the union of their keys in first-seen order, or ``columns``). With a mapping of
        mappings, ``index`` names the column holding the outer keys."""
        header, body = _table_cells(rows, columns, index)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        lines = ["<tr>" + "".join(f"<td>{html.escape(format_value(c))}</td>" for c in r) + "</tr>" for r in body]
        self._parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>")
        return self

    def add_figure(self, fig, caption: str | None = None, *, dpi: int = 110, close: bool = True,
                   png_path: str | os.PathLike | None = None) -> "Report":
        """Embed a matplotlib Figure as a base64 PNG (the figure is closed afterwards unless ``close=False``).

        ``png_path`` also writes the same PNG there (atomically), e.g. for documentation."""
        data = figure_to_png_base64(fig, dpi=dpi)
        if png_path is not None:
            atomic_write_bytes(png_path, base64.b64decode(data))
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        alt = html.escape(caption or "figure", quote=True)
        self._parts.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"/>{cap}</figure>')
        return self

    def to_html(self) -> str:
        """The whole document as a string."""
        title = html.escape(self.title)
        body = "\n".join(self._parts)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><title>{title}</title>"
                f"<style>{_CSS}</style></head>\n<body><h1>{title}</h1>\n{body}\n</body></html>\n")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report atomically (temp file + rename) and return its absolute path."""
        return atomic_write_text(Path(path).resolve(), self.to_html())


def _table_cells(rows, columns, index) -> tuple[list[str], list[list[Any]]]:
    if isinstance(rows, Mapping):
        values = list(rows.values())
        if values and all(isinstance(v, Mapping) for v in values):
            records = [{index or "": k, **v} for k, v in rows.items()]
            return _records(records, columns if columns is None else [index or "", *columns])
        return ["name", "value"], [[k, v] for k, v in rows.items()]
    return _records(list(rows), columns)


def _records(records: Iterable[Mapping[str, Any]], columns) -> tuple[list[str], list[list[Any]]]:
    records = list(records)
    if columns is None:
        columns = list(dict.fromkeys(k for r in records for k in r))
    return list(columns), [[r.get(c) for c in columns] for r in records]
