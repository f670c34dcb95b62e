"""cl-sdk scripts on a fitted model (Python 3.12 with cl-sdk: run by tests/test_cl_sdk.py in .venv-cl).

The example scripts of cl-sdk's own documentation (taken from the installed package's docstrings and
run unchanged), the closed-loop example of this project, a recording made through cl-sdk loading
back with its stims, and the evoked response through cl-sdk against model.stimulate()'s
(computed by the 3.11 side with the torch model, passed in a JSON file).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

cl = pytest.importorskip("cl", reason="cl-sdk is not installed (it needs Python >= 3.12)")

MODEL = os.environ.get("ORGANOID_SIM_CL_MODEL")
REFERENCE = os.environ.get("ORGANOID_SIM_CL_REFERENCE")
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not MODEL, reason="ORGANOID_SIM_CL_MODEL (a saved model directory) is not set")

sys.path.insert(0, str(Path(__file__).parent))
from cl_models import response_probability  # noqa: E402

FPS = 25_000


def _use_model(seed=0, **extra):
    """Register the model as cl-sdk's data source (a fresh simulator on the next cl.open())."""
    cl.sim.set_simulator_data_source("organoid_sim.cl:source", config={"model": MODEL, "seed": seed, **extra})


@pytest.fixture(autouse=True)
def _accelerated(monkeypatch, tmp_path):
    monkeypatch.setenv("CL_SDK_ACCELERATED_TIME", "1")
    monkeypatch.chdir(tmp_path)             # recordings land in the test's folder
    yield
    cl.sim.clear_simulator_data_source()


def _doc_examples(obj):
    return re.findall(r"```python\n(.*?)```", inspect.getdoc(obj) or "", re.S)


def _namespace():
    """What the documentation's snippets assume is imported."""
    import numpy

    from cl import BurstDesign, ChannelSet, StimDesign
    from cl._sim._closed_loop import LoopTick

    return {"cl": cl, "numpy": numpy, "ChannelSet": ChannelSet, "StimDesign": StimDesign,
            "BurstDesign": BurstDesign, "LoopTick": LoopTick}


def test_documentation_examples_run_unchanged():
    import organoid_sim
    from cl._sim._closed_loop import Loop
    from cl._sim._stim_plan import StimPlan

    _use_model(seed=0)
    N = cl.Neurons
    snippets = {"stim (ChannelSet, StimDesign, BurstDesign)": _doc_examples(N.stim)[0],
                "create_stim_plan().run()": _doc_examples(N.create_stim_plan)[0],
                "StimPlan": _doc_examples(StimPlan)[0],
                "loop(...).run(callback)": _doc_examples(Loop.run)[0],
                "record(stop_after_seconds=3)": _doc_examples(N.record)[1],
                "record() ... stop()": _doc_examples(N.record)[0],
                "create_data_stream": _doc_examples(N.create_data_stream)[0],
                "sync + tick.analysis.stims": _doc_examples(N.sync)[0]}
    spaces = {}
    for name, code in snippets.items():
        ns = _namespace()
        try:
            exec(compile(code, f"<cl-sdk docs: {name}>", "exec"), ns)
        except Exception as exc:  # noqa: BLE001 - say which example failed
            raise AssertionError(f"cl-sdk documentation example {name!r} failed on the model: {exc!r}") from exc
        spaces[name] = ns
    # what the examples say should happen
    assert spaces["sync + tick.analysis.stims"]["group_gap"] > 1250
    rec = organoid_sim.load(spaces["record(stop_after_seconds=3)"]["recording"].file["path"])
    assert rec.duration == pytest.approx(3.0, abs=0.05) and rec.n_spikes > 10
    ds = organoid_sim.load(spaces["create_data_stream"]["recording"].file["path"])
    assert ds.metadata["data_streams"]["example_data_stream"]["n_events"] == 4
    # the stream's values (one a numpy uint64 array) read back as cl-sdk's own RecordingView reads them
    from cl import RecordingView

    from organoid_sim.io.cl1 import read_data_stream

    path = spaces["create_data_stream"]["recording"].file["path"]
    _, ours = read_data_stream(path, "example_data_stream")
    with RecordingView(path) as view:
        stream = view.data_streams["example_data_stream"]
        theirs = [stream[k] for k in stream.keys()]
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs):
        assert type(a) is type(b), (a, b)
        assert np.array_equal(a, b) if isinstance(b, np.ndarray) else a == b, (a, b)


def test_closed_loop_spikes_on_model_channels_and_recording_loads_back():
    """``for tick in neurons.loop(...)`` with ``tick.analysis.spikes``: spikes arrive on the model's
    channels only; stimulating on detected spikes; the recording holds the same spikes and stims."""
    import organoid_sim
    from cl import ChannelSet, StimDesign

    layout = json.loads((Path(MODEL) / "model.json").read_text())["layout"]
    model_channels = set(layout["electrode_ids"])      # a CL1-layout model: channel = electrode id
    _use_model(seed=1)
    seen, sent = [], []
    with cl.open() as neurons:
        recording = neurons.record(stop_after_seconds=5.0)
        for tick in neurons.loop(ticks_per_second=200, stop_after_seconds=5.0):
            for spike in tick.analysis.spikes:
                seen.append((spike.timestamp, spike.channel))
                if spike.channel == 18 and (not sent or spike.timestamp - sent[-1] > 0.02 * FPS):
                    neurons.stim(ChannelSet(27), StimDesign(160, -1.0, 160, 1.0))
                    sent.append(spike.timestamp)
        recording.wait_until_stopped()
    assert len(seen) > 50 and {c for _, c in seen} <= model_channels
    rec = organoid_sim.load(recording.file["path"], stim_amplitude_ua=-1.0, stim_phase_us=160.0)
    assert rec.stim.electrode.tolist() == [27] * len(rec.stim) and abs(len(rec.stim) - len(sent)) <= 1
    t0 = recording.start_timestamp
    in_file = sorted(zip(np.round(np.concatenate(rec.spike_times) * FPS).astype(int).tolist(),
                         np.repeat(rec.unit_ids, [len(x) for x in rec.spike_times]).tolist()))
    seen_rel = sorted((t - t0, c) for t, c in seen if 0 <= t - t0 < 5.0 * FPS)
    common = len(set(in_file) & set(seen_rel))
    assert common >= 0.95 * len(seen_rel), (common, len(seen_rel), len(in_file))
    # every stim is followed by spikes only after it: the first spike on channel 27 after a pulse
    # comes >= 1 frame later (causal), and responses show up within 2-50 ms
    p = response_probability(rec.stim.time, np.concatenate(rec.spike_times),
                             np.repeat(rec.unit_ids, [len(x) for x in rec.spike_times]), [27])
    assert p[0] > 0.2
    # cl-sdk's own analyses read the same file: its per-channel rates equal ours
    from cl import RecordingView

    with RecordingView(recording.file["path"]) as view:
        stats = view.analyse_firing_stats(bin_size_sec=1.0)
        view.analyse_network_bursts(bin_size_sec=0.01, onset_freq_hz=20.0, offset_freq_hz=10.0)
    cl_rates = np.asarray(stats.channel_mean_firing_rates, float)
    ours = dict(zip(rec.unit_ids.tolist(), rec.firing_rates()))
    for c in sorted(model_channels):
        assert cl_rates[c] == pytest.approx(ours[c], rel=0.05, abs=0.3), (c, cl_rates[c], ours[c])


def test_same_seed_same_spikes():
    def run(seed):
        _use_model(seed=seed)
        out = []
        with cl.open() as neurons:
            for tick in neurons.loop(ticks_per_second=100, stop_after_seconds=1.5):
                out += [(s.timestamp, s.channel)
                        for s in tick.analysis.spikes]
        return out

    a, b = run(5), run(5)       # (another seed giving other spikes: tests/test_cl_stream.py)
    assert len(a) > 20 and a == b


def test_wall_clock_mode(monkeypatch):
    """cl-sdk's default mode: the loop is paced to the wall clock (a tick is not handed over before
    its time), the model still answers."""
    monkeypatch.delenv("CL_SDK_ACCELERATED_TIME")
    _use_model(seed=2)
    n = 0
    with cl.open() as neurons:
        t = time.perf_counter()
        for tick in neurons.loop(ticks_per_second=50, stop_after_seconds=1.0, ignore_jitter=True):
            n += len(tick.analysis.spikes)
        wall = time.perf_counter() - t
    assert n > 10 and wall >= 0.95


@pytest.mark.skipif(not REFERENCE, reason="ORGANOID_SIM_CL_REFERENCE (model.stimulate() figures) is not set")
def test_evoked_response_through_cl_sdk_equals_model_stimulate():
    """4 pulses per second on channel 27 through cl-sdk (``neurons.stim`` in a loop); response
    probability in 2-50 ms on channels 27, 26, 9 from the cl-sdk recording, within 4 binomial standard
    errors (+ 0.02) of model.stimulate()'s for the same pulses."""
    import organoid_sim
    from cl import ChannelSet, StimDesign

    ref = json.loads(Path(REFERENCE).read_text())
    _use_model(seed=11)
    with cl.open() as neurons:
        recording = neurons.record(stop_after_seconds=ref["duration_s"])
        for tick in neurons.loop(ticks_per_second=4, stop_after_seconds=ref["duration_s"] - 0.25):
            neurons.stim(ChannelSet(27), StimDesign(160, -1.0, 160, 1.0))
        recording.wait_until_stopped()
    rec = organoid_sim.load(recording.file["path"])
    t = np.concatenate(rec.spike_times)
    ch = np.repeat(rec.unit_ids, [len(x) for x in rec.spike_times])
    ours = response_probability(rec.stim.time, t, ch, ref["channels"])
    p, n_ref, n = np.array(ref["probability"]), ref["n_pulses"], len(rec.stim)
    se = np.sqrt(np.maximum(p * (1 - p), 0.01) * (1 / n_ref + 1 / n))
    assert n > 100 and p[0] > ref["baseline"][0] + 0.2
    np.testing.assert_array_less(np.abs(ours - p), 4 * se + 0.02)


def test_example_script_runs_faster_than_real_time_command():
    """The README's one command: examples/cl_closed_loop.py on the model (accelerated); it prints
    its own speed (no timed assertion: the box may be loaded)."""
    env = {**os.environ, "CL_SDK_DATA_SOURCE": "organoid_sim.cl:source",
           "CL_SDK_DATA_SOURCE_CONFIG": json.dumps({"model": MODEL, "seed": 0}), "CL_SDK_ACCELERATED_TIME": "1"}
    t = time.time()
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "cl_closed_loop.py"), "--seconds", "3"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "x real time" in out.stdout and "stims" in out.stdout, out.stdout
    print(out.stdout.strip().splitlines()[-1], f"(whole run {time.time() - t:.1f} s)")
