"""One-call summaries: :func:`describe` a recording, :func:`compare` two of them.

:func:`describe` gathers every statistic of this package into a :class:`Description` (scalars,
per-unit vectors, pairwise matrices and distributions). :func:`compare` describes a reference and a
candidate (recorded vs recorded, recorded vs simulated) and measures a distance for each figure:
signed relative error for scalars, Pearson r and RMSE for per-unit vectors and for the off-diagonal
correlation / STTC matrices, two-sample Kolmogorov-Smirnov distance for distributions. Recordings
may differ in duration and time origin (every figure is per second or per interval); per-unit and
pairwise distances need the same units (matched by id).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._common import InsufficientSpikesWarning, ks_distance
from .avalanches import Avalanches, avalanches
from .bursts import NetworkBursts, burst_statistics, detect_bursts
from .pairwise import correlation_matrix, sttc
from .single_unit import burstiness_index, cv_isi, fano_factor, isi, lv

__all__ = ["Description", "describe", "Comparison", "compare", "DEFAULT_TOLERANCES"]

# label, unit, format: the order and wording of the scalar table.
_SCALARS = {
    "n_units": ("units", "", "{:.0f}"),
    "n_active_units": ("active units (>= 1 spike)", "", "{:.0f}"),
    "n_spikes": ("spikes", "", "{:,.0f}"),
    "duration_s": ("duration", "s", "{:.1f}"),
    "mean_rate_hz": ("mean rate per unit", "Hz", "{:.3f}"),
    "median_rate_hz": ("median rate per unit", "Hz", "{:.3f}"),
    "population_rate_hz": ("population rate", "Hz", "{:.2f}"),
    "median_cv_isi": ("median ISI CV", "", "{:.3f}"),
    "median_lv": ("median LV", "", "{:.3f}"),
    "median_fano": ("median Fano factor (1 s)", "", "{:.3f}"),
    "burstiness_index": ("population burstiness index", "", "{:.3f}"),
    "mean_corr": ("mean pairwise correlation", "", "{:.4f}"),
    "mean_sttc": ("mean pairwise STTC", "", "{:.4f}"),
    "n_bursts": ("network bursts", "", "{:.0f}"),
    "burst_rate_per_min": ("burst rate", "/min", "{:.2f}"),
    "median_burst_duration_s": ("median burst duration", "s", "{:.4f}"),
    "mean_burst_duration_s": ("mean burst duration", "s", "{:.4f}"),
    "mean_ibi_s": ("mean inter-burst interval", "s", "{:.3f}"),
    "cv_ibi": ("IBI CV", "", "{:.3f}"),
    "mean_spikes_per_burst": ("spikes per burst", "", "{:.1f}"),
    "fraction_spikes_in_bursts": ("fraction of spikes in bursts", "", "{:.3f}"),
    "mean_recruitment": ("mean recruitment (units/burst)", "", "{:.3f}"),
    "n_avalanches": ("avalanches", "", "{:.0f}"),
    "avalanche_bin_ms": ("avalanche bin", "ms", "{:.3f}"),
    "avalanche_size_exponent": ("avalanche size exponent", "", "{:.3f}"),
    "avalanche_duration_exponent": ("avalanche duration exponent", "", "{:.3f}"),
    "branching_ratio": ("branching ratio", "", "{:.3f}"),
}
_UNIT_VECTORS = ("rate_hz", "cv_isi", "lv", "fano", "burstiness")


@dataclass
class Description:
    """All summary figures of one recording (see :func:`describe`).

    ``scalars`` (dict, keys in ``_SCALARS``), ``per_unit`` (dict of ``[N]`` arrays: ``rate_hz``,
    ``cv_isi``, ``lv``, ``fano``, ``burstiness``), ``corr`` and ``sttc`` (``N x N``), ``isi_s`` (all
    ISIs, s), ``bursts`` (:class:`NetworkBursts`), ``avalanches`` (:class:`Avalanches` or None),
    ``skipped`` (statistic -> unit ids left out for too few spikes), ``params``, ``unit_ids``, ``info``.
    """

    scalars: dict
    per_unit: dict
    corr: np.ndarray
    sttc: np.ndarray
    isi_s: np.ndarray
    bursts: NetworkBursts
    avalanches: Avalanches | None
    skipped: dict
    params: dict
    unit_ids: np.ndarray
    info: dict = field(default_factory=dict)

    def to_dict(self, full: bool = False) -> dict:
        """JSON-serialisable dict: scalars, per-unit lists, skipped units, params, info.

        ``full=True`` adds the correlation and STTC matrices and the burst table.
        """
        d = {"info": dict(self.info), "scalars": {k: _py(v) for k, v in self.scalars.items()},
             "per_unit": {k: [_py(x) for x in v] for k, v in self.per_unit.items()},
             "unit_ids": self.unit_ids.tolist(), "skipped": {k: list(v) for k, v in self.skipped.items()},
             "params": dict(self.params)}
        if full:
            d["corr"] = [[_py(x) for x in row] for row in self.corr]
            d["sttc"] = [[_py(x) for x in row] for row in self.sttc]
            d["bursts"] = self.bursts.to_dict()
        return d

    def __str__(self) -> str:
        head = ", ".join(f"{k} {v}" for k, v in self.info.items() if v not in (None, ""))
        lines = [f"Description of {head or 'a recording'}"]
        for key, (label, unit, fmt) in _SCALARS.items():
            v = self.scalars.get(key)
            text = "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
            lines.append(f"  {label + (f' ({unit})' if unit else ''):<38} {text}")
        for stat, ids in self.skipped.items():
            if ids:
                lines.append(f"  note: {stat} undefined for {len(ids)} units with too few spikes: "
                             f"{', '.join(map(str, ids[:8]))}{' ...' if len(ids) > 8 else ''}")
        return "\n".join(lines)


def _py(v):
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _offdiag(m: np.ndarray) -> np.ndarray:
    return m[~np.eye(len(m), dtype=bool)] if len(m) else np.zeros(0)


def _nanmedian(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


def _check_one_well(rec, allow: bool) -> None:
    wells = rec.metadata.get("wells")
    if not isinstance(wells, list) or len(wells) < 2:
        return
    text = (f"the recording holds {len(wells)} wells ({', '.join(map(str, wells[:8]))}"
            f"{', ...' if len(wells) > 8 else ''}), separate cultures that describe() would treat as one network")
    if not allow:
        raise ValueError(f"{text}; load one well (load(path, well=...)) or pass allow_multi_well=True")
    warnings.warn(text, UserWarning, stacklevel=3)


def describe(rec, *, corr_bin_ms: float = 10.0, sttc_dt: float = 0.01, sttc_rtol: float = 0.0,
             fano_bin_ms: float = 1000.0,
             min_spikes: int = 10, burst_params: dict | None = None, avalanche_bin_ms: float | None = None,
             allow_multi_well: bool = False) -> Description:
    """Describe a recording with the standard MEA statistics (one :class:`Description`).

    Per-unit statistics need ``min_spikes`` spikes (units below are NaN and listed in ``skipped``,
    never silently); pairwise correlation uses ``corr_bin_ms`` ms bins, STTC a ``sttc_dt`` s window
    with the exact window of Cutts & Eglen (``sttc_rtol=0``: unlike elephant's tolerance it does not
    depend on the time origin, so recordings starting at different times compare fairly); Fano factors ``fano_bin_ms`` ms
    windows; network bursts :func:`detect_bursts` with ``burst_params``; avalanches
    ``avalanche_bin_ms`` (default: mean population ISI).

    A recording of several wells (``metadata["wells"]`` lists more than one, e.g. an Axion plate
    loaded with ``well="all"``) holds separate cultures: pairwise statistics and network bursts
    across wells mean nothing, so it raises ``ValueError`` unless ``allow_multi_well=True``
    (then a ``UserWarning``). Load one well instead (``load(path, well="D3")``).
    """
    _check_one_well(rec, allow_multi_well)
    burst_params = dict(burst_params or {})
    counts = rec.spike_counts
    low = counts < min_spikes
    ids = rec.unit_ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientSpikesWarning)  # reported through `skipped` instead
        per_unit = {"rate_hz": rec.firing_rates(),
                    "cv_isi": cv_isi(rec, min_spikes=max(min_spikes, 3)),
                    "lv": lv(rec, min_spikes=max(min_spikes, 3)),
                    "fano": fano_factor(rec, fano_bin_ms, min_spikes=min_spikes) if rec.duration * 1000 >= 2 * fano_bin_ms
                    else np.full(rec.n_units, np.nan),
                    "burstiness": burstiness_index(rec, min_spikes=min_spikes)}
        corr = correlation_matrix(rec, corr_bin_ms)
        st = sttc(rec, sttc_dt, rtol=sttc_rtol)
    bursts = detect_bursts(rec, **burst_params)
    bstats = burst_statistics(rec, bursts)
    try:
        av = avalanches(rec, avalanche_bin_ms)
    except ValueError:
        av = None
    isi_s, _ = isi(rec)
    pair_ok = ~low
    sub = np.ix_(pair_ok, pair_ok)
    scalars = {
        "n_units": rec.n_units, "n_active_units": int(np.sum(counts > 0)), "n_spikes": rec.n_spikes,
        "duration_s": rec.duration,
        "mean_rate_hz": float(np.mean(per_unit["rate_hz"])) if rec.n_units else float("nan"),
        "median_rate_hz": float(np.median(per_unit["rate_hz"])) if rec.n_units else float("nan"),
        "population_rate_hz": rec.n_spikes / rec.duration if rec.duration > 0 else float("nan"),
        "median_cv_isi": _nanmedian(per_unit["cv_isi"]), "median_lv": _nanmedian(per_unit["lv"]),
        "median_fano": _nanmedian(per_unit["fano"]),
        "burstiness_index": burstiness_index(rec, population=True, min_spikes=min_spikes),
        "mean_corr": float(np.nanmean(_offdiag(corr[sub]))) if pair_ok.sum() > 1 else float("nan"),
        "mean_sttc": float(np.nanmean(_offdiag(st[sub]))) if pair_ok.sum() > 1 else float("nan"),
    }
    scalars.update({k: bstats[k] for k in ("n_bursts", "burst_rate_per_min", "burst_rate_hz", "median_burst_duration_s",
                                          "mean_burst_duration_s", "mean_ibi_s", "cv_ibi", "mean_spikes_per_burst",
                                          "fraction_spikes_in_bursts", "mean_recruitment")})
    scalars.update({
        "n_avalanches": len(av) if av is not None else 0,
        "avalanche_bin_ms": av.bin_s * 1000 if av is not None else float("nan"),
        "avalanche_size_exponent": av.size_fit.alpha if av is not None and av.size_fit else float("nan"),
        "avalanche_duration_exponent": av.duration_fit.alpha if av is not None and av.duration_fit else float("nan"),
        "branching_ratio": av.branching_ratio if av is not None else float("nan"),
    })
    skipped = {"per-unit statistics": ids[low].tolist()}
    if av is None or av.size_fit is None:
        skipped["avalanche exponents (too few avalanches)"] = ["all"]
    md = rec.metadata
    info = {"source": md.get("source"), "well": md.get("well"),
            "window": f"{rec.t_start:.3f}-{rec.t_stop:.3f} s"}
    params = {"corr_bin_ms": corr_bin_ms, "sttc_dt_s": sttc_dt, "sttc_rtol": sttc_rtol, "fano_bin_ms": fano_bin_ms, "min_spikes": min_spikes,
              "burst": bursts.params, "avalanche_bin_ms": scalars["avalanche_bin_ms"]}
    return Description(scalars=scalars, per_unit=per_unit, corr=corr, sttc=st, isi_s=isi_s, bursts=bursts,
                       avalanches=av, skipped=skipped, params=params, unit_ids=np.asarray(ids), info=info)


# ---------------------------------------------------------------------------------------- compare
DEFAULT_TOLERANCES = {
    "rate_r": (">=", 0.7), "rate_median_rel_err": ("<=", 0.3), "burst_rate_rel_err": ("abs<=", 0.3),
    "burst_duration_rel_err": ("abs<=", 0.5), "corr_matrix_r": (">=", 0.5), "sttc_matrix_r": (">=", 0.5),
    "isi_ks": ("<=", 0.2),
}


def _rel_err(ref, cand) -> float:
    """Signed relative error; 0 when both are 0, inf when only the reference is 0, NaN if undefined."""
    ref, cand = float(ref), float(cand)
    if not (np.isfinite(ref) and np.isfinite(cand)):
        return float("nan")
    if ref == 0:
        return 0.0 if cand == 0 else float("inf")
    return (cand - ref) / abs(ref)


def _r_rmse(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    a, b = a[ok], b[ok]
    rmse = float(np.sqrt(np.mean((a - b) ** 2)))
    if np.array_equal(a, b):
        return 1.0, rmse  # identical (even constant) vectors agree perfectly
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan"), rmse
    return float(np.corrcoef(a, b)[0, 1]), rmse


@dataclass
class Comparison:
    """Reference vs candidate: both :class:`Description` objects, a distance per figure, a verdict.

    ``rows``: list of ``(name, reference, candidate, distance, kind)`` (kind: ``rel_err``, ``r``,
    ``rmse``, ``ks``); ``summary``: the headline distances (keys in docs/INTERFACES.md plus more);
    ``checks``: name -> (value, passed) for the verdict; ``verdict``: one line; ``notes``: caveats.
    """

    reference: Description
    candidate: Description
    rows: list
    summary: dict
    checks: dict
    verdict: str
    notes: list

    def to_dict(self) -> dict:
        """JSON-serialisable: summary, rows, checks, verdict, notes."""
        return {"summary": {k: _py(v) for k, v in self.summary.items()},
                "rows": [{"name": n, "reference": _py(r), "candidate": _py(c), "distance": _py(d), "kind": k}
                         for n, r, c, d, k in self.rows],
                "checks": {k: {"value": _py(v), "passed": bool(p)} for k, (v, p) in self.checks.items()},
                "verdict": self.verdict, "notes": list(self.notes)}

    def __str__(self) -> str:
        fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"  # noqa: E731
        lines = [f"{'statistic':<36} {'reference':>11} {'candidate':>11} {'distance':>10}  kind"]
        for name, r, c, d, kind in self.rows:
            lines.append(f"{name:<36} {fmt(r):>11} {fmt(c):>11} {fmt(d):>10}  {kind}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.verdict)
        return "\n".join(lines)


def _check(value: float, rule: tuple) -> bool:
    op, lim = rule
    if not np.isfinite(value):
        return False
    return {"<=": value <= lim, ">=": value >= lim, "abs<=": abs(value) <= lim}[op]


def compare(reference, candidate, *, tolerances: dict | None = None, **describe_params) -> Comparison:
    """Compare a candidate recording (e.g. a simulation) with a reference recording.

    Both may be :class:`~organoid_sim.SpikeRecording` or :class:`Description` (described with
    ``describe_params``). Scalars get the signed relative error ``(candidate - reference) / |reference|``;
    per-unit vectors Pearson r and RMSE over units valid in both; the correlation and STTC matrices r
    and RMSE over off-diagonal pairs; ISI, burst duration, inter-burst interval, spikes-per-burst and
    avalanche-size distributions the KS distance. ``summary`` holds ``rate_r``, ``rate_median_rel_err``
    (median over units of ``|c - r| / r``), ``burst_rate_rel_err``, ``burst_duration_rel_err``
    (median durations), ``corr_matrix_r``, ``sttc_matrix_r`` and the other headline distances. The
    verdict passes when every check in ``tolerances`` (default :data:`DEFAULT_TOLERANCES`) holds;
    checks undefined for the recordings at hand (NaN, e.g. matrix r with one unit) are left out and
    named in ``notes``.
    A candidate recording is described with the reference's avalanche bin width and burst detector
    (its ``max_isi_n`` and ``min_units``), so both sides are judged by one definition of an event.
    """
    ref = reference if isinstance(reference, Description) else describe(reference, **describe_params)
    if not isinstance(candidate, Description):
        # avalanches depend on the bin width and bursts on the ISI_N window, which both adapt to a
        # recording's rate: use the reference's for both sides
        if "avalanche_bin_ms" not in describe_params and np.isfinite(ref.params.get("avalanche_bin_ms", np.nan)):
            describe_params = {**describe_params, "avalanche_bin_ms": ref.params["avalanche_bin_ms"]}
        if "burst_params" not in describe_params:  # the parameters detect_bursts actually used
            describe_params = {**describe_params, "burst_params": dict(ref.params["burst"])}
    cand = candidate if isinstance(candidate, Description) else describe(candidate, **describe_params)
    notes: list[str] = []
    same_units = len(ref.unit_ids) == len(cand.unit_ids)
    if not same_units:
        notes.append(f"unit counts differ ({len(ref.unit_ids)} vs {len(cand.unit_ids)}): per-unit and pairwise "
                     "distances are not computed")
    elif not (ref.unit_ids.dtype.kind == cand.unit_ids.dtype.kind and np.array_equal(ref.unit_ids, cand.unit_ids)):
        notes.append("unit ids differ: units matched by their order (e.g. the same electrode layout in two wells)")
    rows = []
    for key in _SCALARS:
        if key in ("n_units", "n_spikes", "duration_s", "avalanche_bin_ms", "n_bursts", "n_avalanches"):
            continue  # counts that grow with the duration: compared through rates instead
        rows.append((key, ref.scalars.get(key), cand.scalars.get(key),
                     _rel_err(ref.scalars.get(key, np.nan), cand.scalars.get(key, np.nan)), "rel_err"))
    summary: dict = {}
    for key in _UNIT_VECTORS:
        r, e = _r_rmse(ref.per_unit[key], cand.per_unit[key]) if same_units else (float("nan"),) * 2
        rows += [(f"{key} per unit", None, None, r, "r"), (f"{key} per unit", None, None, e, "rmse")]
        summary[f"{'rate' if key == 'rate_hz' else key}_r"] = r
        summary[f"{'rate' if key == 'rate_hz' else key}_rmse"] = e
    for key, attr in (("corr_matrix", "corr"), ("sttc_matrix", "sttc")):
        r, e = (_r_rmse(_offdiag(getattr(ref, attr)), _offdiag(getattr(cand, attr))) if same_units
                else (float("nan"),) * 2)
        rows += [(key + " off-diagonal", None, None, r, "r"), (key + " off-diagonal", None, None, e, "rmse")]
        summary[f"{key}_r"], summary[f"{key}_rmse"] = r, e
    dists = {"isi": (ref.isi_s, cand.isi_s), "burst_duration": (ref.bursts.duration, cand.bursts.duration),
             "ibi": (np.diff(ref.bursts.start), np.diff(cand.bursts.start)),
             "spikes_per_burst": (ref.bursts.n_spikes, cand.bursts.n_spikes),
             "avalanche_size": tuple(d.avalanches.sizes if d.avalanches is not None else np.zeros(0) for d in (ref, cand))}
    for key, (a, b) in dists.items():
        ks = ks_distance(a, b)
        rows.append((f"{key} distribution", None, None, ks, "ks"))
        summary[f"{key}_ks"] = ks
    rate_ref, rate_cand = ref.per_unit["rate_hz"], cand.per_unit["rate_hz"]
    if same_units:
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.abs(rate_cand - rate_ref) / rate_ref
        summary["rate_median_rel_err"] = _nanmedian(np.where(rate_ref > 0, per, np.nan))
    else:
        summary["rate_median_rel_err"] = float("nan")
    summary["burst_rate_rel_err"] = _rel_err(ref.scalars["burst_rate_hz"], cand.scalars["burst_rate_hz"])
    summary["burst_duration_rel_err"] = _rel_err(ref.scalars["median_burst_duration_s"],
                                                 cand.scalars["median_burst_duration_s"])
    for key in ("mean_rate_hz", "mean_corr", "mean_sttc", "fraction_spikes_in_bursts", "cv_ibi", "median_cv_isi"):
        summary[f"{key}_rel_err"] = _rel_err(ref.scalars[key], cand.scalars[key])
    tol = dict(DEFAULT_TOLERANCES if tolerances is None else tolerances)
    if ref.scalars["n_bursts"] == 0 and cand.scalars["n_bursts"] == 0:
        tol.pop("burst_duration_rel_err", None)  # no bursts on either side: nothing to compare
        notes.append("neither recording has network bursts: burst duration not compared")
    values = {k: float(summary.get(k, float("nan"))) for k in tol}
    unassessable = [k for k, v in values.items() if np.isnan(v)]
    if unassessable:
        notes.append(f"not assessable (undefined for these recordings), left out of the verdict: {', '.join(unassessable)}")
    checks = {k: (v, _check(v, tol[k])) for k, v in values.items() if k not in unassessable}
    failed = [k for k, (_, ok) in checks.items() if not ok]
    if not checks:
        verdict = "verdict: CANNOT JUDGE (no check is defined for these recordings)"
    elif not failed:
        verdict = f"verdict: REPRODUCES the reference ({len(checks)}/{len(checks)} checks pass)"
    else:
        shown = ", ".join(f"{k}={_fmt(checks[k][0])}" for k in failed)
        verdict = f"verdict: DIFFERS from the reference ({len(checks) - len(failed)}/{len(checks)} checks pass; failing: {shown})"
    return Comparison(reference=ref, candidate=cand, rows=rows, summary=summary, checks=checks, verdict=verdict,
                      notes=notes)


def _fmt(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:+.3g}"
