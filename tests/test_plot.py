"""Figures: each function returns a Figure with the expected content and saves a non-empty PNG."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from organoid_sim import SpikeRecording, StimEvents, plot, stats


def _png_ok(fig, tmp_path, name):
    p = plot.save(fig, tmp_path / f"{name}.png", dpi=50)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temporary file


def test_raster_shades_bursts_and_draws_population_rate(d1, d1_desc, tmp_path):
    fig = plot.raster(d1, d1_desc.bursts, t0=300, t1=360)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    shown = np.sum((d1_desc.bursts.stop >= 300) & (d1_desc.bursts.start <= 360))
    assert len(fig.axes[0].patches) == shown > 0          # one shaded span per burst in view
    t, r = stats.population_rate(d1.time_slice(300, 360), 10.0)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), r)
    _png_ok(fig, tmp_path, "raster")


def test_rate_map_uses_electrode_positions(d1, tmp_path):
    fig = plot.rate_map(d1)
    offsets = fig.axes[0].collections[1].get_offsets()
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(d1.positions[:, 0]))
    np.testing.assert_allclose(np.sort(fig.axes[0].collections[1].get_array()), np.sort(d1.firing_rates()))
    _png_ok(fig, tmp_path, "rate_map")


def test_matrix_distribution_avalanche_figures(d1_desc, tmp_path):
    for name, fig in {"sttc": plot.pairwise_matrix(d1_desc.sttc, d1_desc.unit_ids, "STTC"),
                      "dist": plot.distributions(d1_desc),
                      "aval": plot.avalanche_distributions(d1_desc.avalanches)}.items():
        assert isinstance(fig, Figure)
        _png_ok(fig, tmp_path, name)
    img = np.ma.filled(plot.pairwise_matrix(d1_desc.sttc).axes[0].images[0].get_array(), np.nan)
    assert np.isnan(np.diag(img)).all()  # diagonal blanked, off-diagonal kept
    np.testing.assert_allclose(img[0, 1], d1_desc.sttc[0, 1])


def test_psth_and_comparison_figures(d1, d1_desc, tmp_path):
    times = np.arange(1.0, 30.0, 0.5)
    rec = SpikeRecording.from_spike_times([times + 0.02, times + 0.05], t_start=0, t_stop=31,
                                          stim=StimEvents.from_columns(times, 3, 5.0, 100.0, 2))
    p = stats.psth(rec, rec.stim.time, bin_ms=5.0)
    fig = plot.psth(p, window=(0.01, 0.2))
    assert isinstance(fig, Figure)
    _png_ok(fig, tmp_path, "psth")
    head, tail = d1.time_slice(164.0, 464.0).split(0.5)
    cmp = stats.compare(tail, head)
    fig = plot.comparison(cmp, tail, head)
    assert len(fig.axes) >= 14 and "verdict" in fig.get_suptitle()
    _png_ok(fig, tmp_path, "comparison")


def test_save_description_figures(d1, d1_desc, tmp_path):
    paths = plot.save_description_figures(d1, d1_desc, tmp_path / "figs", dpi=40)
    assert {p.name for p in paths} == {"raster.png", "rate_map.png", "correlation.png", "sttc.png",
                                       "distributions.png", "avalanches.png"}
