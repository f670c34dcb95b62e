"""Pass/fail of a well's evaluation against the fidelity bars the project reports its fits against.

The bars (README, "Results on the real cultures"): the network predicts held-out spikes better
than the held-out mean rates (bits/spike > 0) and at least as well as the coupled GLM; per-unit
rates r >= 0.9 with a median relative error <= 20 %; pairwise correlations r >= 0.7; burst rate
and median burst duration within 25 % of the held-out recording.
"""

from __future__ import annotations

import math

from ..evaluation import held_out_bars

__all__ = ["BARS", "fidelity_checks"]


def _plain_bars() -> dict:
    """``bits/spike > 0`` and :func:`organoid_sim.evaluation.held_out_bars` (one source for the
    limits), as check name -> (figure of the "network" row, comparison, bar)."""
    out = {"bits_per_spike > 0": ("bits_per_spike", ">", 0.0)}
    for b in held_out_bars():
        name = f"{b.figure} >= {b.limit:g}" if b.kind == "min" else f"|{b.figure}| <= {b.limit:g}"
        out[name] = (b.figure, ">=" if b.kind == "min" else "abs<=", b.limit)
    return out


#: check name -> (figure of the "network" row, comparison, bar); plain bars: a plate summary
#: judges each well on its own figures, without the recording's noise floor
BARS = _plain_bars()


def _passes(value, op: str, bar: float) -> bool | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None   # undefined (e.g. no bursts on either side): not judged
    value = float(value)
    return {">": value > bar, ">=": value >= bar, "abs<=": abs(value) <= bar}[op]


def fidelity_checks(evaluation: dict) -> dict:
    """Each bar of :data:`BARS`, plus ``network >= GLM``, judged on an evaluation.

    Parameters
    ----------
    evaluation : dict
        ``organoid_sim.evaluate(...).to_dict()`` (NaN may be None).

    Returns
    -------
    dict
        Check name -> True (met), False (missed) or None (the figure is undefined, e.g. no bursts
        in either the held-out part or the simulation).
    """
    net = evaluation.get("network", {})
    out = {name: _passes(net.get(key), op, bar) for name, (key, op, bar) in BARS.items()}
    glm = evaluation.get("glm", {}).get("bits_per_spike")
    mine = net.get("bits_per_spike")
    out["network >= GLM"] = (None if glm is None or mine is None or not (math.isfinite(glm) and math.isfinite(mine))
                             else bool(mine >= glm))
    return out
