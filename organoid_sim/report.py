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
from urllib.parse import quote

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
table.plate td { text-align: center; min-width: 4.2em; } table.plate a { color: inherit; text-decoration: none; }
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

    def add_html(self, markup: str) -> "Report":
        """Raw HTML the caller has built and escaped (e.g. :func:`plate_overview`'s well grid)."""
        self._parts.append(str(markup))
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


# ---------------------------------------------------------------- plate overview (organoid_sim.batch runs)
_PASS_COLOURS = {True: "#7bc47f", False: "#e8746b", None: "#d9d9de", "error": "#555555"}


def _well_position(well) -> tuple[str, int] | None:
    """``("B", 3)`` for a plate well name like ``B3``; None for other names (e.g. MaxTwo's
    ``well000``, which is no row letter and column: it would land in column 0, off the grid)."""
    import re

    m = re.fullmatch(r"([A-Za-z]{1,2})0*([1-9]\d*)", str(well or ""))
    return (m.group(1).upper(), int(m.group(2))) if m else None


def _bits_of(result: Mapping) -> float | None:
    """Held-out bits/spike of the evaluation when there is one, else the fit's validation figure."""
    net = (result.get("evaluation") or {}).get("network") or {}
    v = net.get("bits_per_spike", result.get("val_bits"))
    return None if v is None or v != v else float(v)


def _bits_colour(v: float | None, scale: float) -> str:
    if v is None:
        return _PASS_COLOURS[None]
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return to_hex(colormaps["RdBu"](0.5 + 0.5 * max(-1.0, min(1.0, v / scale))))


def _well_cell(result: Mapping, colour: str, text: str, base: Path) -> str:
    job_dir = base / str(result.get("job", ""))
    target = "report.html" if "report.html" in (result.get("figures") or []) else "result.json"
    # percent-encoded: a file stem with '#', '%' or '?' (it names the job folder) would cut the link
    href = html.escape(quote(os.path.relpath(job_dir / target, base).replace(os.sep, "/")), quote=True)
    tip = html.escape(_figures_tip(result), quote=True)
    label = html.escape(str(result.get("well") or "recording"))
    return (f'<td style="background:{colour}" title="{tip}"><a href="{href}">{label}<br/>'
            f'{html.escape(text)}</a></td>')


def _figures_tip(result: Mapping) -> str:
    if result.get("status") != "ok":
        err = result.get("error") or {}
        return f"failed: {err.get('type')}: {err.get('message')}"
    missed = [k for k, v in (result.get("checks") or {}).items() if v is False]
    return "missed: " + ", ".join(missed) if missed else ("all checks met" if result.get("passed") else "not evaluated")


def _grid(results: list, kind: str, base: Path) -> str:
    """One plate's well grid, coloured by pass/fail of the fidelity checks (``kind="checks"``) or
    of the in-sample self-check (``"in_sample"``), or by bits/spike."""
    from .batch.results import in_sample_passed   # batch sits below the report, imported when drawn

    placed = {_well_position(r.get("well")): r for r in results}
    bits = [abs(b) for b in map(_bits_of, results) if b is not None]
    scale = max(bits) if bits and max(bits) > 0 else 1.0
    if None in placed:   # wells without a plate position: one row in run order
        grid = [[r for r in results]]
    else:
        rows = sorted({p[0] for p in placed}, key=lambda r: (len(r), r))
        cols = range(1, max(p[1] for p in placed) + 1)
        grid = [[placed.get((r, c)) for c in cols] for r in rows]
    lines = []
    for row in grid:
        cells = []
        for r in row:
            if r is None:
                cells.append("<td></td>")
                continue
            b = _bits_of(r)
            if r.get("status") != "ok":
                colour, text = _PASS_COLOURS["error"], "error"
            elif kind in ("checks", "in_sample"):
                ok = r.get("passed") if kind == "checks" else in_sample_passed(r)
                colour, text = _PASS_COLOURS[ok], {True: "pass", False: "fail", None: "\u2014"}[ok]
            else:
                colour, text = _bits_colour(b, scale), "\u2014" if b is None else f"{b:.2f}"
            cells.append(_well_cell(r, colour, text, base))
        lines.append("<tr>" + "".join(cells) + "</tr>")
    caption = {"checks": "fidelity checks: green all met, red some missed, grey not evaluated, dark failed job",
               "in_sample": "in-sample self-check (the network against its own fitting window): green every bar "
                            "met, red some missed, grey not checked, dark failed job"}.get(
        kind, f"bits/spike (held-out when evaluated, else the fit's validation part): blue > 0 > red, "
              f"full colour at |{scale:.2f}|")
    return f'<table class="plate"><caption>{html.escape(caption)}</caption><tbody>{"".join(lines)}</tbody></table>'


def plate_overview(results: Sequence[Mapping], path: str | os.PathLike, *, title: str = "Plate overview") -> Path:
    """Write an HTML overview of an :func:`organoid_sim.batch.fit_many` run and return its path.

    Per file, the plate's well grid three times: coloured by pass/fail of the fidelity checks, by
    pass/fail of each fit's in-sample self-check, and by bits/spike; each well links to its
    ``report.html`` (or ``result.json``). Below, the results table. Job folders are taken
    relative to ``path``'s folder (write it into the run's output directory).

    Parameters
    ----------
    results : sequence of dict
        What ``fit_many`` returned (or ``results.json``'s ``"results"``).
    path : str or path
        The HTML file to write (atomically).
    title : str
        Page title.

    Returns
    -------
    Path
        The absolute path written.
    """
    from .batch import table_rows

    path = Path(path).resolve()
    rep = Report(title)
    n_ok = sum(r.get("status") == "ok" for r in results)
    rep.add_text(f"{len(results)} jobs: {n_ok} fitted, {len(results) - n_ok} failed.")
    by_file: dict = {}
    for r in results:
        by_file.setdefault(Path(str(r.get("file"))).name, []).append(r)
    for name, rs in by_file.items():
        rep.add_heading(name, 3)
        rep.add_html('<div style="display:flex; gap:2em; flex-wrap:wrap">' + _grid(rs, "checks", path.parent)
                     + _grid(rs, "in_sample", path.parent) + _grid(rs, "bits", path.parent) + "</div>")
    rep.add_heading("Results")
    rep.add_table(table_rows(list(results)))
    return rep.save(path)


def well_report(result: Mapping, figures: Mapping[str, Any]) -> Report:
    """A one-well report of a batch job: its figures and checks, and the given matplotlib figures.

    Parameters
    ----------
    result : dict
        The job's result (``organoid_sim.batch.run_job``).
    figures : mapping
        Caption -> matplotlib Figure (embedded, then closed).

    Returns
    -------
    Report
        The report (call ``.save(path)``).
    """
    rep = Report(f"{Path(str(result.get('file'))).name} {result.get('well') or ''}".strip())
    rep.add_table({k: result.get(k) for k in ("status", "seed", "n_units", "n_spikes", "duration_s", "val_bits",
                                             "fit_s", "passed")}, caption="Fit")
    if result.get("checks"):
        rep.add_table({k: {True: "met", False: "missed", None: "undefined"}[v] for k, v in result["checks"].items()},
                      caption="Fidelity checks (network row of the evaluation)")
    check = result.get("in_sample") or {}
    if check.get("passed"):
        from .fit.self_check import IN_SAMPLE_BARS

        rep.add_table({b.label: {"value": check["figures"].get(b.figure), "limit": b.limit,
                                 "result": "met" if check["passed"][b.figure] else "missed"} for b in IN_SAMPLE_BARS},
                      index="in-sample bar",
                      caption="In-sample self-check: the fitted network's simulation against its own fitting "
                              "window (relative errors as fractions)")
    ev = result.get("evaluation") or {}
    rows = {k: v for k, v in ev.items() if isinstance(v, Mapping) and k not in ("timings_s", "settings")}
    if rows:
        rep.add_table(rows, index="row", caption="Evaluation: fitted on the first part, judged on the rest")
    for w in result.get("warnings") or []:
        rep.add_text(w, note=True)
    for caption, fig in figures.items():
        rep.add_figure(fig, caption=caption)
    return rep
