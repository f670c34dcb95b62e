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

__all__ = ["Description", "describe", "Comparison", "compare", "DEFAULT_TOLERANCES", "burst_count_p"]

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
             "params": {k: _py(v) for k, v in self.params.items()}}  # NaN avalanche bin (< 2 spikes) -> None
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
            if text == "n/a" and key in _NOT_FITTED:
                text = "not fitted"
            lines.append(f"  {label + (f' ({unit})' if unit else ''):<38} {text}")
        for stat, ids in self.skipped.items():
            if ids and stat.startswith("avalanche"):
                lines.append(f"  note: {stat}" + ("" if ids == ["all"] else f": {', '.join(map(str, ids))}"))
            elif ids:
                lines.append(f"  note: {stat} undefined for {len(ids)} units with too few spikes: "
                             f"{', '.join(map(str, ids[:8]))}{' ...' if len(ids) > 8 else ''}")
        return "\n".join(lines)


def _exponent(fit) -> float:
    """A power-law fit's exponent, NaN when there is none or it stopped at a bound ("not fitted")."""
    return fit.alpha if fit is not None and fit.fitted else float("nan")


_NOT_FITTED = ("avalanche_size_exponent", "avalanche_duration_exponent")


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
        "avalanche_size_exponent": _exponent(av.size_fit if av is not None else None),
        "avalanche_duration_exponent": _exponent(av.duration_fit if av is not None else None),
        "branching_ratio": av.branching_ratio if av is not None else float("nan"),
    })
    skipped = {"per-unit statistics": ids[low].tolist()}
    if av is None or av.size_fit is None:
        skipped["avalanche exponents (too few avalanches)"] = ["all"]
    else:
        at_bound = [name for name, f in (("size", av.size_fit), ("duration", av.duration_fit))
                    if f is not None and not f.fitted]
        if at_bound:
            skipped["avalanche exponents not fitted (the estimate stopped at a bound of its search range: "
                    "no power law)"] = at_bound
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


#: describe() keyword -> key of Description.params, for describing a candidate like its reference
_DESCRIBE_PARAMS = {"corr_bin_ms": "corr_bin_ms", "sttc_dt": "sttc_dt_s", "sttc_rtol": "sttc_rtol",
                    "fano_bin_ms": "fano_bin_ms", "min_spikes": "min_spikes"}

N_PERMUTATIONS = 200  # unit relabellings that give the spread of r between unrelated matrices


def _split_half_r(rec, ref: Description, same_units: bool) -> dict:
    """How well the reference agrees with itself: for the per-unit rates and the correlation / STTC
    matrices, ``(r, sd)`` with ``r`` the Pearson r between the first and the second half of ``rec``
    (the reference's own parameters) and ``sd`` the spread of that r when the second half's units
    are relabelled at random (seeded): r between unrelated vectors or matrices of the same kind,
    whose off-diagonal entries share units and so are not independent."""
    if not same_units or rec.duration <= 0 or rec.n_units < 4:
        return {}
    first, second = rec.split(0.5)
    p = ref.params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientSpikesWarning)
        halves = {"rate_r": [h.firing_rates() for h in (first, second)],
                  "corr_matrix_r": [correlation_matrix(h, p["corr_bin_ms"]) for h in (first, second)],
                  "sttc_matrix_r": [sttc(h, p["sttc_dt_s"], rtol=p["sttc_rtol"]) for h in (first, second)]}
    rng = np.random.default_rng(0)
    perms = [rng.permutation(rec.n_units) for _ in range(N_PERMUTATIONS)]
    out = {}
    for key, (a, b) in halves.items():
        flat = (lambda m: m) if key == "rate_r" else _offdiag
        pick = (lambda m, q: m[q]) if key == "rate_r" else (lambda m, q: m[np.ix_(q, q)])
        r, _ = _r_rmse(flat(a), flat(b))
        null = np.array([_r_rmse(flat(a), flat(pick(b, q)))[0] for q in perms])
        null = null[np.isfinite(null)]
        out[key] = (r, float(np.std(null)) if len(null) > 10 else float("nan"))
    return out


def _floor_bar(r_half: float, sd: float) -> float:
    """The lowest r a candidate may show when the reference agrees with itself only to ``r_half``:
    ``r_half - 3 * sqrt(2) * sd``, three standard deviations of the difference of two such r's
    (the candidate's and the halves'), ``sd`` the spread of r between unrelated matrices: a correct
    model of a culture without structure then fails such a check about once in 700."""
    if not (np.isfinite(r_half) and np.isfinite(sd)):
        return float("nan")
    return float(r_half - 3.0 * math.sqrt(2.0) * sd)


#: two-sided p-value above which a burst-count difference is counting noise (3 sigma of a normal)
P_NOISE = 0.0027


def burst_count_p(n_reference: int, duration_reference_s: float, n_candidate: int,
                  duration_candidate_s: float) -> float:
    """Two-sided p-value that two burst counts come from one Poisson rate: given the total, the
    reference's count is binomial with ``p = T_ref / (T_ref + T_cand)`` (``scipy.stats.binomtest``).
    A small p says the burst rates differ by more than counting noise.

    Parameters
    ----------
    n_reference, n_candidate : int
        Network bursts counted in each recording.
    duration_reference_s, duration_candidate_s : float
        Durations (s) of the two recordings.

    Returns
    -------
    float
        The p-value; NaN without bursts or without positive durations.
    """
    from scipy.stats import binomtest

    k_r, k_c = int(n_reference), int(n_candidate)
    t_r, t_c = float(duration_reference_s), float(duration_candidate_s)
    if k_r + k_c == 0 or not (t_r > 0 and t_c > 0):
        return float("nan")
    return float(binomtest(k_r, k_r + k_c, t_r / (t_r + t_c)).pvalue)


def _burst_count_p(ref: dict, cand: dict) -> float:
    """:func:`burst_count_p` of two descriptions' scalars (``n_bursts``, ``duration_s``)."""
    return burst_count_p(int(ref.get("n_bursts", 0) or 0), float(ref.get("duration_s", 0.0)),
                         int(cand.get("n_bursts", 0) or 0), float(cand.get("duration_s", 0.0)))


def compare(reference, candidate, *, tolerances: dict | None = None, noise_floor: bool = True,
            **describe_params) -> Comparison:
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
    (its ``max_isi_n`` and ``min_units``), so both sides are judged by one definition of an event,
    and with the reference's bins, STTC window and ``min_spikes`` (those of a reference given as a
    :class:`Description`) unless ``describe_params`` names them.

    Noise floor (``noise_floor=True`` and a reference given as a recording): the ``r`` checks
    (``rate_r``, ``corr_matrix_r``, ``sttc_matrix_r``) are also computed between the reference's
    two halves. When the reference does not reach a check's tolerance against itself (e.g. the
    correlation matrices of independent Poisson trains are noise), the check's bar is lowered to
    that floor less three standard deviations of a difference of two r's (:func:`_floor_bar`), so a correct model of a noisy culture
    is not called different; ``summary["floor_<check>"]`` holds the halves' r and ``notes`` says
    which bars moved. A burst rate outside its tolerance still passes when the two burst counts
    are within counting noise (:func:`_burst_count_p` >= :data:`P_NOISE`, e.g. 0 against 3
    chance bursts of a Poisson culture; noted). Avalanche exponents that are not fitted (estimate at a bound) are not compared.
    """
    ref_rec = None if isinstance(reference, Description) else reference
    ref = reference if isinstance(reference, Description) else describe(reference, **describe_params)
    if not isinstance(candidate, Description):
        # a reference given as a Description carries its own bins and windows: describe the candidate with them
        describe_params = {**{k: ref.params[p] for k, p in _DESCRIBE_PARAMS.items() if p in ref.params},
                           **describe_params}
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
    for key in _NOT_FITTED:
        missing = [side for side, d in (("reference", ref), ("candidate", cand))
                   if not np.isfinite(d.scalars.get(key, np.nan))]
        if missing and any(np.isfinite(d.scalars.get(key, np.nan)) for d in (ref, cand)):
            notes.append(f"{key.replace('_', ' ')} not fitted on the {' and '.join(missing)}: not compared")
    tol = dict(DEFAULT_TOLERANCES if tolerances is None else tolerances)
    if noise_floor and ref_rec is not None:
        for key, (r_half, sd) in _split_half_r(ref_rec, ref, same_units).items():
            summary[f"floor_{key}"] = r_half
            if key not in tol or tol[key][0] != ">=":
                continue
            bar = _floor_bar(r_half, sd)
            old = tol[key][1]
            if np.isfinite(r_half) and r_half < old and np.isfinite(bar) and bar < old:
                tol[key] = (">=", bar)
                notes.append(f"{key}: the reference's two halves agree only to r = {r_half:.3f} (noise floor), "
                             f"so the bar is r >= {bar:.3f} instead of {old:g}")
    if ref.scalars["n_bursts"] == 0 and cand.scalars["n_bursts"] == 0:
        tol.pop("burst_duration_rel_err", None)  # no bursts on either side: nothing to compare
        notes.append("neither recording has network bursts: burst duration not compared")
    values = {k: float(summary.get(k, float("nan"))) for k in tol}
    unassessable = [k for k, v in values.items() if np.isnan(v)]
    if unassessable:
        notes.append(f"not assessable (undefined for these recordings), left out of the verdict: {', '.join(unassessable)}")
    checks = {k: (v, _check(v, tol[k])) for k, v in values.items() if k not in unassessable}
    if noise_floor and "burst_rate_rel_err" in tol and not _check(values["burst_rate_rel_err"],
                                                                  tol["burst_rate_rel_err"]):
        p = _burst_count_p(ref.scalars, cand.scalars)
        if p >= P_NOISE:
            checks["burst_rate_rel_err"] = (values["burst_rate_rel_err"], True)
            notes.append(f"burst_rate_rel_err: {ref.scalars['n_bursts']:.0f} and {cand.scalars['n_bursts']:.0f} "
                         f"bursts in {ref.scalars['duration_s']:.0f} and {cand.scalars['duration_s']:.0f} s are "
                         f"within counting noise (two-sided binomial p = {p:.3g} >= {P_NOISE}): passed at the "
                         "noise floor")
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
