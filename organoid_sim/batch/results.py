"""The results table of a batch run: ``results.json`` (every result in full) and ``results.csv``
(one row per job, the headline figures), both written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import atomic_write_text
from .jobs import write_json

__all__ = ["CSV_COLUMNS", "in_sample_passed", "table_rows", "write_tables"]

#: columns of results.csv; evaluation figures are those of the "network" row; ``in_sample_passed``:
#: the fit's self-check met every in-sample bar
CSV_COLUMNS = ("file", "well", "status", "skipped", "seed", "n_units", "n_spikes", "duration_s", "val_bits",
               "fit_s", "wall_s", "passed", "in_sample_passed", "bits_per_spike", "glm_bits_per_spike", "rate_r",
               "rate_median_rel_err", "corr_matrix_r", "burst_rate_rel_err", "burst_duration_rel_err",
               "error", "job")


def in_sample_passed(result: dict) -> bool | None:
    """Whether a job's fit met every in-sample bar of its self-check (``result["in_sample"]``);
    None without a check (a failed job, or ``self_check=False``).

    Parameters
    ----------
    result : dict
        A job's result.

    Returns
    -------
    bool or None
    """
    passed = (result.get("in_sample") or {}).get("passed")
    return bool(all(passed.values())) if passed else None


def table_rows(results: list[dict]) -> list[dict]:
    """One flat row per result with the :data:`CSV_COLUMNS` (None where a figure is missing)."""
    rows = []
    for r in results:
        ev = r.get("evaluation") or {}
        net = ev.get("network") or {}
        err = r.get("error") or {}
        row = {c: r.get(c) for c in CSV_COLUMNS}
        row.update({k: net.get(k) for k in ("bits_per_spike", "rate_r", "rate_median_rel_err", "corr_matrix_r",
                                            "burst_rate_rel_err", "burst_duration_rel_err")})
        row["glm_bits_per_spike"] = (ev.get("glm") or {}).get("bits_per_spike")
        row["error"] = f"{err.get('type')}: {err.get('message')}" if err else None
        row["skipped"] = bool(r.get("skipped", False))
        row["in_sample_passed"] = in_sample_passed(r)
        rows.append(row)
    return rows


def write_tables(out_dir, results: list[dict]) -> tuple[Path, Path]:
    """Write ``out_dir/results.json`` and ``out_dir/results.csv`` atomically; returns both paths."""
    out_dir = Path(out_dir)
    write_json(out_dir / "results.json", {"results": results})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in table_rows(results):
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    return out_dir / "results.json", out_dir / "results.csv"
