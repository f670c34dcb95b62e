"""The figures a reader looks at say what they show: labelled ticks on every histogram, one range
for both sides of a comparison, labelled matrix axes and colour bars, an explained PSTH band."""

from __future__ import annotations

import numpy as np
import pytest

from organoid_sim import SpikeRecording, StimEvents, plot, stats


def _tick_labels(ax) -> list[str]:
    ax.figure.canvas.draw()  # labels exist once the figure is drawn
    return [t.get_text() for t in ax.get_xticklabels() if t.get_text()]


@pytest.fixture(scope="module")
def d1_comparison(d1):
    head, tail = d1.time_slice(164.0, 464.0).split(0.5)
    cmp = stats.compare(tail, head)
    return cmp, plot.comparison(cmp, tail, head)


def _axes_titled(fig, words):
    return [ax for ax in fig.axes if all(w in ax.get_title() for w in words)]


def test_comparison_histograms_share_their_range_and_label_their_ticks(d1_comparison):
    cmp, fig = d1_comparison
    for words in (("bursts (rate",), ("ISI",)):
        left, right = _axes_titled(fig, words)
        assert left.get_xlim() == right.get_xlim()
        lo = min(np.min(d.bursts.duration if "bursts" in words[0] else d.isi_s) for d in (cmp.reference, cmp.candidate))
        assert left.get_xlim()[0] == pytest.approx(lo)
        for ax in (left, right):
            labels = _tick_labels(ax)
            assert len(labels) >= 2, (words, labels)
            assert all(float(x) > 0 for x in labels)


def test_comparison_rasters_name_their_time_axis(d1_comparison):
    """The raster row's time axis (e.g. 90-120 s in the demo's comparison.png) had ticks but no label."""
    _, fig = d1_comparison
    rasters = _axes_titled(fig, ("raster",))
    assert len(rasters) == 2 and all(ax.get_xlabel() == "time (s)" for ax in rasters)


def test_short_log_range_still_has_labelled_ticks():
    """Burst durations of 40-90 ms hold no power of ten: the axis gets 1-2-5 ticks (0.05)."""
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    plot._hist_on(ax, np.linspace(0.04, 0.09, 50), "burst duration (s)", log=True)
    assert "0.05" in _tick_labels(ax)


def test_matrices_have_axis_and_colour_bar_labels(d1_desc, d1_comparison):
    _, fig = d1_comparison
    for ax in _axes_titled(fig, ("correlation",)) + _axes_titled(fig, ("STTC",)):
        assert ax.get_xlabel() and ax.get_ylabel()
    bars = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bars.count("Pearson correlation") == 2 and bars.count("STTC") == 2
    single = plot.pairwise_matrix(d1_desc.sttc, d1_desc.unit_ids, "STTC (dt 0.01 s)")
    assert [ax.get_ylabel() for ax in single.axes if ax.get_label() == "<colorbar>"] == ["STTC"]
    assert single.axes[0].get_xlabel() == "unit id"


def test_psth_band_is_explained():
    times = np.arange(1.0, 30.0, 0.5)
    rec = SpikeRecording.from_spike_times([times + 0.02, times + 0.05], t_start=0, t_stop=31,
                                          stim=StimEvents.from_columns(times, 3, 5.0, 100.0, 2))
    fig = plot.psth(stats.psth(rec, rec.stim.time, bin_ms=5.0), window=(0.002, 0.05))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "response window 2-50 ms" in legend and "stimulus onset" in legend


def test_psth_rows_are_labelled_with_the_chosen_units_ids():
    times = np.arange(1.0, 30.0, 0.5)
    rec = SpikeRecording.from_spike_times([times + 0.02, times + 0.05, times + 0.08], t_start=0, t_stop=31,
                                          unit_ids=[10, 11, 12], stim=StimEvents.from_columns(times, 3, 5.0, 100.0, 2))
    p = stats.psth(rec, rec.stim.time, bin_ms=5.0)
    heat = plot.psth(p, units=[2, 0]).axes[1]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["12", "10"]
    # each labelled row holds that unit's rates: unit 12 answers 80 ms after the pulse
    mesh = heat.collections[0].get_array().reshape(2, -1)
    assert np.argmax(mesh[0]) == np.argmax(p.rate_hz[:, 2]) != np.argmax(p.rate_hz[:, 0])


def test_protocol_reads_as_text_in_reports():
    from organoid_sim.stimulation import CL1, probe_electrodes

    p = CL1.assign(probe_electrodes([1, 2], n_repeats=2, name="probe"))
    assert str(p).startswith("protocol 'probe': 4 trains, 4 pulses") and "device cl1" in str(p)
    assert "Protocol(" not in str(p)
