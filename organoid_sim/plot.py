"""Figures for recordings and their statistics (matplotlib; every function returns the ``Figure``).

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state, no GUI
backend), so they work on headless machines; save them with ``fig.savefig(path)``.

* :func:`raster` -- spike raster with network bursts shaded and the population rate beneath;
* :func:`rate_map` -- firing rate of each electrode drawn on the array layout (um);
* :func:`pairwise_matrix` -- correlation or STTC matrix;
* :func:`distributions` -- ISI, burst duration, inter-burst interval and spikes-per-burst histograms;
* :func:`avalanche_distributions` -- avalanche size and duration distributions, log-log, with fits;
* :func:`psth` -- peri-stimulus time histogram;
* :func:`comparison` -- reference and candidate side by side (two columns) for a ``Comparison``;
* :func:`save_description_figures` -- all of the above for one recording into a folder.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from .atomic import atomic_path

__all__ = ["raster", "rate_map", "pairwise_matrix", "distributions", "avalanche_distributions", "psth",
           "comparison", "save_description_figures", "save"]


def _title(rec) -> str:
    md = rec.metadata
    src = Path(md["source"]).name if md.get("source") else ""
    well = f"well {md['well']}" if md.get("well") else ""
    # long lab file names (Axion exports) would push the well out of a narrow axes' title
    sep = "\n" if len(src) + len(well) > 40 else " "
    return sep.join(p for p in (src, well) if p)


def _first_second(rec) -> float:
    """Start of the activity: the first spike rounded down (Axion files start the clock long before)."""
    return max(rec.t_start, float(np.floor(rec.times.min()))) if rec.n_spikes else rec.t_start


def _draw_raster(ax, rec, t0: float, t1: float, bursts=None, max_units: int = 200) -> None:
    n = min(rec.n_units, max_units)
    for i, st in enumerate(rec.spike_times[:n]):
        s = st[(st >= t0) & (st < t1)]
        ax.vlines(s, i + 0.1, i + 0.9, color="k", lw=0.4)
    if bursts is not None:
        min_w = 0.002 * (t1 - t0)  # keep short bursts visible at any zoom
        for a, z in zip(bursts.start, bursts.stop):
            if z >= t0 and a <= t1:
                ax.axvspan(a, max(z, a + min_w), color="tab:red", alpha=0.3, lw=0)
    ax.set_ylim(n, 0)  # first unit on top
    ax.set_ylabel("unit")
    step = max(1, n // 16)
    ax.set_yticks(np.arange(0, n, step) + 0.5)
    ax.set_yticklabels([str(u) for u in rec.unit_ids[:n:step]], fontsize=6)


def raster(rec, bursts=None, t0: float | None = None, t1: float | None = None, rate_bin_ms: float = 10.0,
           max_units: int = 200, title: str | None = None) -> Figure:
    """Raster of ``[t0, t1)`` s (default: 60 s from the first spike) with bursts shaded and the population
    rate (Hz) below.

    ``bursts`` is a :class:`~organoid_sim.stats.NetworkBursts` (detected with defaults when None;
    pass ``False`` for none). At most ``max_units`` rows are drawn.
    """
    from .stats import detect_bursts, population_rate

    t0 = _first_second(rec) if t0 is None else float(t0)
    t1 = min(rec.t_stop, t0 + 60.0) if t1 is None else float(t1)
    if bursts is None:
        bursts = detect_bursts(rec)
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax, axr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    _draw_raster(ax, rec, t0, t1, bursts or None, max_units)
    t, r = population_rate(rec.time_slice(t0, t1), rate_bin_ms)
    axr.plot(t + rate_bin_ms / 2000.0, r, color="tab:blue", lw=0.8)
    axr.set_ylabel(f"population rate\n(Hz, {rate_bin_ms:g} ms bins)")
    axr.set_xlabel("time (s)")
    axr.set_xlim(t0, t1)
    n_b = int(np.sum((bursts.stop >= t0) & (bursts.start <= t1))) if bursts else 0
    ax.set_title(title or f"{_title(rec)}  {rec.n_units} units, {n_b} network bursts shown (shaded)")
    return fig


def rate_map(rec, title: str | None = None) -> Figure:
    """Mean firing rate (Hz) of each unit drawn at its electrode position (um) on the array layout.

    Units at the same electrode are summed; electrodes of the layout without units are drawn empty.
    """
    fig = Figure(figsize=(5.5, 4.8), layout="constrained")
    ax = fig.subplots()
    pos = rec.positions
    ok = np.all(np.isfinite(pos), axis=1)
    if not ok.any():
        ax.text(0.5, 0.5, "no electrode positions in this recording", ha="center", va="center", transform=ax.transAxes)
        return fig
    lay = rec.electrodes.positions
    if len(lay):
        ax.scatter(lay[:, 0], lay[:, 1], s=180, facecolors="none", edgecolors="0.7", lw=0.8)
    xy, inv = np.unique(pos[ok], axis=0, return_inverse=True)
    rate = np.bincount(inv.ravel(), weights=rec.firing_rates()[ok])
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=rate, s=180, cmap="viridis", edgecolors="k", lw=0.5)
    for (x, y), r in zip(xy, rate):
        ax.annotate(f"{r:.1f}", (x, y), textcoords="offset points", xytext=(0, 10), ha="center", fontsize=7)
    fig.colorbar(sc, ax=ax, label="firing rate (Hz)")
    ax.set_aspect("equal")
    ax.margins(0.15)
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.set_title(title or f"Rate map\n{_title(rec)}", fontsize=10)
    return fig


def _offdiag_lim(*mats) -> float:
    vals = [np.abs(np.asarray(m, float)[~np.eye(len(m), dtype=bool)]) for m in mats if len(m) > 1]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    return float(vals.max()) if len(vals) and vals.max() > 0 else 1.0


def _matrix_on(ax, fig, m: np.ndarray, labels, title: str, lim: float | None = None, cmap="RdBu_r",
               value_label: str = "pairwise value") -> None:
    m = np.array(m, dtype=float)
    np.fill_diagonal(m, np.nan)  # the diagonal (1) would dominate the colour scale
    lim = _offdiag_lim(m) if lim is None else lim
    im = ax.imshow(m, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label=value_label)
    if labels is not None and len(labels) <= 32:
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([str(x) for x in labels], rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels([str(x) for x in labels], fontsize=6)
        ax.set_xlabel("unit id")
        ax.set_ylabel("unit id")
    else:
        ax.set_xlabel("unit index")
        ax.set_ylabel("unit index")
    ax.set_title(title)


def pairwise_matrix(m: np.ndarray, unit_ids=None, title: str = "pairwise correlation",
                    value_label: str | None = None) -> Figure:
    """Heat map of an ``N x N`` pairwise matrix (correlation or STTC), diagonal blanked.

    ``value_label`` names the colour bar (default: from ``title``: "STTC" or "Pearson correlation")."""
    if value_label is None:
        value_label = "STTC" if "sttc" in title.lower() else "Pearson correlation of binned counts"
    fig = Figure(figsize=(5.8, 5), layout="constrained")
    _matrix_on(fig.subplots(), fig, m, unit_ids, title, value_label=value_label)
    return fig


def _hist_edges(log: bool, bins: int, *samples) -> np.ndarray | int:
    """Bin edges covering every sample (so that two sides of a comparison share them)."""
    v = np.concatenate([np.asarray(x, float).ravel() for x in samples]) if samples else np.zeros(0)
    v = v[np.isfinite(v) & ((v > 0) if log else True)]
    if len(v) == 0 or v.min() == v.max():
        return bins
    return np.geomspace(v.min(), v.max() * 1.0001, bins) if log else np.linspace(v.min(), v.max(), bins)


def _log_ticks(ax) -> None:
    """Labelled ticks on a log x axis: powers of ten over a wide range, 1-2-5 or finer steps over a
    short one (where no power of ten, or only one, falls inside and the axis would be left unlabelled)."""
    lo, hi = ax.get_xlim()
    if not (lo > 0 and hi > lo):
        return
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), tuple(range(1, 10))):  # >= 3 ticks
        ticks = [m * 10.0 ** k for k in decades for m in subs if lo <= m * 10.0 ** k <= hi]
        if len(ticks) >= 3:
            break
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _hist_on(ax, values, label: str, log: bool = False, bins: int = 40, edges=None, **kw) -> None:
    """Histogram as the fraction of values per bin (log-spaced bins on a log axis when ``log``);
    ``edges`` fixes the bins (and the x range)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & ((v > 0) if log else True)]
    edges = _hist_edges(log, bins, v) if edges is None else edges
    if len(v) == 0:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.hist(v, bins=edges, weights=np.full(len(v), 1.0 / len(v)), **kw)
    if not np.isscalar(edges):
        ax.set_xlim(edges[0], edges[-1])
    if log and (len(v) or not np.isscalar(edges)):
        ax.set_xscale("log")
        _log_ticks(ax)
    ax.set_xlabel(label)
    ax.set_ylabel("fraction")


_DIST = (("isi_s", "inter-spike interval (s)", True), ("burst_duration", "burst duration (s)", True),
         ("ibi", "inter-burst interval (s)", True), ("spikes_per_burst", "spikes per burst", True))


def _dist_values(desc, key: str) -> np.ndarray:
    return {"isi_s": desc.isi_s, "burst_duration": desc.bursts.duration, "ibi": np.diff(desc.bursts.start),
            "spikes_per_burst": desc.bursts.n_spikes}[key]


def distributions(desc, title: str | None = None) -> Figure:
    """Histograms (density, log x) of ISIs, burst durations, inter-burst intervals, spikes per burst."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    for ax, (key, label, log) in zip(fig.subplots(1, 4), _DIST):
        _hist_on(ax, _dist_values(desc, key), label, log, color="tab:blue")
    fig.suptitle(title or "ISI and network-burst distributions")
    return fig


def _loglog_on(ax, values, fit, label: str, color="tab:blue", name: str = "") -> None:
    """Probability per integer value in log-spaced bins (log-log), with the fitted power law."""
    v = np.asarray(values)
    v = v[v >= 1]
    if len(v) == 0:
        ax.text(0.5, 0.5, "no avalanches", ha="center", va="center", transform=ax.transAxes)
        return
    edges = np.unique(np.round(np.geomspace(1, v.max() + 1, 30)))
    counts, _ = np.histogram(v, edges)
    centers = np.sqrt(edges[:-1] * (edges[1:] - 1).clip(min=edges[:-1]))
    dens = counts / (len(v) * np.diff(edges))  # mean probability of each integer in the bin
    ok = counts > 0
    ax.loglog(centers[ok], dens[ok], "o", ms=4, color=color, alpha=0.8, label=name or "data")
    if fit is not None and not getattr(fit, "fitted", True):
        ax.text(0.97, 0.95, "power law not fitted\n(exponent at its search bound)", ha="right", va="top",
                fontsize=7, transform=ax.transAxes)
    elif fit is not None:
        x = np.arange(fit.xmin, v.max() + 1)
        ax.loglog(x, fit.n_tail / len(v) * fit.pmf(x), "-", color=color, lw=1.2,
                  label=f"{name} fit alpha={fit.alpha:.2f}, xmin={fit.xmin}".strip())
    ax.set_xlabel(label)
    ax.set_ylabel("probability")
    ax.legend(fontsize=7)


def avalanche_distributions(av, title: str | None = None) -> Figure:
    """Avalanche size and duration distributions on log-log axes with the fitted power laws."""
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    a, b = fig.subplots(1, 2)
    _loglog_on(a, av.sizes, av.size_fit, "avalanche size (spikes)")
    _loglog_on(b, av.durations_bins, av.duration_fit, f"avalanche duration (bins of {av.bin_s * 1e3:.2f} ms)")
    fig.suptitle(title or f"Neuronal avalanches ({len(av)}; branching ratio {av.branching_ratio:.3f})")
    return fig


def psth(p, units=None, title: str | None = None, window=None) -> Figure:
    """PSTH (a :class:`~organoid_sim.stats.PSTH`): population rate on top, per-unit rates as a heat map.

    ``units`` (indices) restricts the heat map; ``window`` (s) shades the response-counting window.
    """
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    a, b = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    t_ms = p.bin_edges_s * 1000.0
    a.stairs(p.population_rate_hz, t_ms, color="tab:blue", label="population rate")
    a.axvline(0, color="tab:red", lw=1, label="stimulus onset")
    if window is not None:
        a.axvspan(window[0] * 1e3, window[1] * 1e3, color="0.85", zorder=0,
                  label=f"response window {window[0] * 1e3:g}-{window[1] * 1e3:g} ms")
    a.legend(fontsize=7, loc="upper right")
    a.set_ylabel("population rate (Hz)")
    rows = np.arange(p.rate_hz.shape[1]) if units is None else np.asarray(units)
    rates = p.rate_hz[:, rows]
    im = b.pcolormesh(t_ms, np.arange(rates.shape[1] + 1), rates.T, cmap="magma", shading="flat")
    fig.colorbar(im, ax=b, label="rate (Hz)")
    b.axvline(0, color="tab:cyan", lw=1)
    # rows are labelled with the units' ids (at most about 16 labels), not their positions in the heat map
    shown = np.arange(0, len(rows), max(1, int(np.ceil(len(rows) / 16))))
    b.set_yticks(shown + 0.5, [str(u) for u in np.asarray(p.unit_ids)[rows][shown]])
    b.set_ylabel("unit")
    b.set_xlabel("time from stimulus (ms)")
    a.set_title(title or f"PSTH over {p.n_events} events")
    return fig


def comparison(cmp, ref_rec=None, cand_rec=None, labels=("reference", "candidate")) -> Figure:
    """Two-column figure for a :class:`~organoid_sim.stats.Comparison`: reference left, candidate right.

    Rows: raster (first 30 s, when the recordings are given), per-unit rates, ISI distribution,
    correlation matrix, STTC matrix, burst durations, avalanche sizes (log-log). The distance of each
    row is in its title; the verdict is the figure title.
    """
    descs = (cmp.reference, cmp.candidate)
    recs = (ref_rec, cand_rec)
    has_raster = ref_rec is not None and cand_rec is not None
    rows = 7 if has_raster else 6
    fig = Figure(figsize=(11, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, 2)
    s = cmp.summary
    r = 0
    if has_raster:
        for c in range(2):
            rec = recs[c]
            a = _first_second(rec)
            _draw_raster(axes[r, c], rec, a, min(rec.t_stop, a + 30.0), descs[c].bursts, 64)
            axes[r, c].set_xlim(a, min(rec.t_stop, a + 30.0))
            axes[r, c].set_xlabel("time (s)")
            axes[r, c].set_title(f"{labels[c]}: raster, first 30 s, bursts shaded")
        r += 1
    vmax = max(np.nanmax(d.per_unit["rate_hz"]) if len(d.per_unit["rate_hz"]) else 1.0 for d in descs)
    # one set of bins for both sides, so that their histograms can be read against each other
    isi_edges = _hist_edges(True, 40, *(d.isi_s for d in descs))
    burst_edges = _hist_edges(True, 30, *(d.bursts.duration for d in descs))
    for c in range(2):
        rate = descs[c].per_unit["rate_hz"]
        axes[r, c].bar(np.arange(len(rate)), rate, color="tab:blue")
        axes[r, c].set_ylim(0, vmax * 1.05)
        axes[r, c].set_xlabel("unit index")
        axes[r, c].set_ylabel("rate (Hz)")
        axes[r, c].set_title(f"{labels[c]}: rates (r={s['rate_r']:.3f}, median rel. err {s['rate_median_rel_err']:.3f})")
        _hist_on(axes[r + 1, c], descs[c].isi_s, "inter-spike interval (s)", log=True, color="tab:gray",
                 edges=isi_edges)
        axes[r + 1, c].set_title(f"{labels[c]}: ISI (KS {s['isi_ks']:.3f})")
        _matrix_on(axes[r + 2, c], fig, descs[c].corr, None, f"{labels[c]}: correlation (r={s['corr_matrix_r']:.3f})",
                   _offdiag_lim(*(d.corr for d in descs)), value_label="Pearson correlation")
        _matrix_on(axes[r + 3, c], fig, descs[c].sttc, None, f"{labels[c]}: STTC (r={s['sttc_matrix_r']:.3f})",
                   _offdiag_lim(*(d.sttc for d in descs)), value_label="STTC")
        _hist_on(axes[r + 4, c], descs[c].bursts.duration, "burst duration (s)", log=True, color="tab:red",
                 edges=burst_edges)
        axes[r + 4, c].set_title(f"{labels[c]}: {len(descs[c].bursts)} bursts (rate rel. err "
                                 f"{s['burst_rate_rel_err']:+.3f}, duration {s['burst_duration_rel_err']:+.3f})")
        av = descs[c].avalanches
        if av is not None:
            _loglog_on(axes[r + 5, c], av.sizes, av.size_fit, "avalanche size (spikes)")
        axes[r + 5, c].set_title(f"{labels[c]}: avalanche sizes (KS {s['avalanche_size_ks']:.3f})")
    fig.suptitle(textwrap.fill(cmp.verdict, 110), fontsize=10)
    return fig


def save(fig: Figure, path, dpi: int = 110) -> Path:
    """Save a figure atomically (temporary file then ``os.replace``); the format follows the extension."""
    path = Path(path)
    with atomic_path(path, make_parents=True) as tmp:   # tmp keeps the extension: savefig picks the format
        fig.savefig(tmp, dpi=dpi)
    return path


def save_description_figures(rec, desc, out_dir, dpi: int = 110) -> list[Path]:
    """Write raster.png, rate_map.png, correlation.png, sttc.png, distributions.png, avalanches.png."""
    out = Path(out_dir)
    figs = {"raster": raster(rec, desc.bursts), "rate_map": rate_map(rec),
            "correlation": pairwise_matrix(desc.corr, desc.unit_ids, f"correlation ({desc.params['corr_bin_ms']:g} ms bins)"),
            "sttc": pairwise_matrix(desc.sttc, desc.unit_ids, f"STTC (dt {desc.params['sttc_dt_s']:g} s)"),
            "distributions": distributions(desc)}
    if desc.avalanches is not None:
        figs["avalanches"] = avalanche_distributions(desc.avalanches)
    return [save(f, out / f"{name}.png", dpi) for name, f in figs.items()]
