"""Spike tensors against elephant's BinnedSpikeTrain and exact round trips."""

import numpy as np
import quantities as pq
import torch
from elephant.conversion import BinnedSpikeTrain
from hypothesis import given, settings, strategies as st

from organoid_sim.recording import SpikeRecording


def _rec(rng, n=8, duration=30.0):
    trains = [np.sort(rng.uniform(0, duration, rng.poisson(5 * duration))) for _ in range(n)]
    # spikes exactly on bin edges produced by float arithmetic, the case the tolerance is for
    trains[0] = np.sort(np.concatenate([trains[0], np.arange(1, 50) * 0.003]))
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration)


def test_dense_tensor_equals_elephant(rng):
    rec = _rec(rng)
    for bin_ms in (1.0, 3.0, 20.0):
        ours = rec.to_tensor(bin_ms=bin_ms).numpy()
        ref = BinnedSpikeTrain(rec.to_neo(), bin_size=bin_ms * pq.ms).to_array().T
        np.testing.assert_array_equal(ours, ref)


def test_window_arguments(rng):
    rec = _rec(rng)
    part = rec.to_tensor(bin_ms=5.0, t0=10.0, t1=20.0)
    ref = BinnedSpikeTrain(rec.time_slice(10.0, 20.0).to_neo(), bin_size=5 * pq.ms,
                           t_start=10 * pq.s, t_stop=20 * pq.s).to_array().T
    np.testing.assert_array_equal(part.numpy(), ref)


def test_sparse_and_chunks_equal_dense(rng):
    rec = _rec(rng)
    dense = rec.to_tensor(bin_ms=2.0)
    assert torch.equal(rec.to_sparse_tensor(bin_ms=2.0).to_dense(), dense)
    chunks = list(rec.iter_chunks(bin_ms=2.0, chunk_s=7.0))
    assert torch.equal(torch.cat([c for _, c in chunks]), dense)
    np.testing.assert_allclose([t for t, _ in chunks], np.arange(len(chunks)) * 7.0)


def test_dtype_and_device(rng):
    x = _rec(rng).to_tensor(bin_ms=1.0, dtype=torch.float32, device="cpu")
    assert x.dtype == torch.float32 and x.device.type == "cpu"


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.sampled_from([0.5, 1.0, 2.5, 10.0]),
       st.floats(0, 100), st.randoms(use_true_random=False))
def test_tensor_recording_tensor_is_exact(n_bins, n_units, bin_ms, t_start, r):
    counts = torch.tensor([[r.choice([0, 0, 0, 1, 2]) for _ in range(n_units)] for _ in range(n_bins)])
    rec = SpikeRecording.from_tensor(counts, bin_ms, t_start=t_start)
    assert rec.n_spikes == int(counts.sum())
    assert torch.equal(rec.to_tensor(bin_ms=bin_ms), counts.to(rec.to_tensor(bin_ms=bin_ms).dtype))
