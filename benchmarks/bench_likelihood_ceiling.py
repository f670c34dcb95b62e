"""How many held-out bits/spike any model can reach on a recording: the ceiling behind issue 4's
"bits/spike > 0" bar, measured on the same split as ``organoid_sim.evaluate`` (first 75 % to fit,
last 25 % to judge, 5 ms bins, recording cut to first..last spike).

The score is the held-out Poisson log-likelihood minus that of a homogeneous Poisson model firing
each unit at its own held-out mean rate, in bits per spike (``SpikingNetworkModel.score``). That
null knows the held-out rates, so a model fitted on the first part starts behind it wherever the
rates drift. Rows:

* ``fitted rates``: each unit at its fitting-part rate (the Poisson baseline);
* ``causal drift tracker (W s)``: each unit's share of all past spikes times the population rate
  of the last W s - what a model that follows slow rate drift from the recorded past can reach;
* ``non-causal drift bound (W s)``: each unit's *held-out* mean times the held-out population rate
  smoothed over W s centred on the bin - it sees the future, so no one-step-ahead model of slow
  modulation can beat it.

What fast structure (refractoriness, coupling) can add is bounded by the spike-train statistics
in docs/models.md; the coupled GLM and the network, fitted on the first part, add nothing there.

Run: ``python benchmarks/bench_likelihood_ceiling.py [--dataset NGN2|D1|...] [--json]``.
Figures in docs/models.md (NGN2 section).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DT_MS = 5.0
WINDOWS_S = (10.0, 30.0, 60.0, 120.0)


def _bits(expected: np.ndarray, counts: np.ndarray) -> float:
    """Poisson log-likelihood of ``counts`` ``[T, N]`` under ``expected`` (counts per bin) minus the
    held-out homogeneous null's, in bits per spike (the log-factorials cancel)."""
    null = counts.mean(0, keepdims=True)
    ll = (counts * np.log(expected) - expected).sum()
    ll0 = (counts * np.log(np.where(null > 0, null, 1.0)) - null).sum()
    return float((ll - ll0) / np.log(2) / counts.sum())


def _trailing_mean(x: np.ndarray, start: int, width: int) -> np.ndarray:
    """Mean of ``x`` over the ``width`` bins before each bin ``start..len(x)-1`` (fewer at the start)."""
    cs = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, axis=0)])
    idx = np.arange(start, len(x))
    lo = np.maximum(idx - width, 0)
    return (cs[idx] - cs[lo]) / (idx - lo).reshape((-1,) + (1,) * (x.ndim - 1))


def ceiling(recording, split: float = 0.75) -> dict:
    """The rows described in the module docstring for one recording (bits/spike)."""

    recording = recording.trim_silence()
    counts = recording.to_tensor(DT_MS).double().numpy()
    cut = int(len(counts) * split)
    fit_part, held = counts[:cut], counts[cut:]
    rates = fit_part.mean(0, keepdims=True)
    out = {"fitted rates": _bits(np.broadcast_to(rates, held.shape).clip(1e-12), held)}
    population = counts.sum(1)
    share = (np.cumsum(counts, 0)[cut - 1:-1] + 1.0) / (np.cumsum(population)[cut - 1:-1, None] + counts.shape[1])
    held_mean = held.mean(0, keepdims=True)
    for w_s in WINDOWS_S:
        width = int(round(w_s * 1000.0 / DT_MS))
        recent = _trailing_mean(population, cut, width)[:, None]
        out[f"causal drift tracker ({w_s:g} s)"] = _bits((share * recent).clip(1e-12), held)
        kernel = np.ones(width) / width
        pop_held = held.sum(1)
        smooth = np.convolve(pop_held, kernel, "same") / np.convolve(np.ones_like(pop_held), kernel, "same")
        out[f"non-causal drift bound ({w_s:g} s)"] = _bits(held_mean * (smooth / pop_held.mean())[:, None], held)
    return out


def main(argv=None) -> int:
    from bench_fit import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="NGN2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = ceiling(load_dataset(args.dataset))
    print(f"{args.dataset}: held-out bits/spike against the held-out homogeneous null")
    for name, value in rows.items():
        print(f"  {name:<42}{value:+.4f}")
    if args.json:
        print(json.dumps({args.dataset: rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
