"""The raw signal of the model's array: int16 frames (25 kHz x 64 channels) of noise plus spike waveforms.

Noise: Gaussian, ``noise_uv`` uV standard deviation (2.5 uV by default, about the noise of cl-sdk's
own random source), drawn once per seed as a 4 s bank and read per one-second block with a seeded
random offset per channel, so any frame range is reproducible from the seed alone and a second
of noise costs one gather. The grounded channels 0, 7, 56, 63 are flat zero.

Spikes: a fixed extracellular waveform, scaled per channel to ``spike_uv`` uV (60 uV) times a seeded
factor in [0.7, 1.3] (channels differ, as electrodes do). A spike's timestamp is its threshold
crossing: the deflection starts at that frame, the negative trough (0.1 ms wide) follows
:data:`TROUGH_FRAMES` frames (0.16 ms) later, then a positive after-phase (30 % of the trough, 0.6 ms
after the crossing); the waveform lasts :data:`POST_FRAMES` frames. Nothing of it lies before the
timestamp, so a block of frames needs only spikes up to its end (the model is never run ahead of the
read position). Units of sample: ``uv_per_unit`` uV (0.195, cl-sdk's default), so a 60 uV spike is
about -300 units.
"""

from __future__ import annotations

import numpy as np

FPS = 25_000
N_CHANNELS = 64
GROUNDED = (0, 7, 56, 63)
UV_PER_UNIT = 0.195
PRE_FRAMES = 0        # frames of waveform before a spike's timestamp (none: the timestamp is the crossing)
TROUGH_FRAMES = 4     # frames from the crossing to the trough
POST_FRAMES = 40
#: frames of cl-sdk's spike snippet before the spike and in total (cl._sim._data_buffer)
SNIPPET_BEFORE = 25
SNIPPET_TOTAL = 75
_BANK_BLOCKS = 4


def spike_template(n_before: int = PRE_FRAMES, n_after: int = POST_FRAMES) -> np.ndarray:
    """Unit-trough waveform (trough = -1 at frame ``TROUGH_FRAMES``) on frames ``-n_before .. n_after``
    from the spike's timestamp (float64).

    Parameters
    ----------
    n_before, n_after : frames before and after the trough.

    Returns
    -------
    array ``[n_before + 1 + n_after]``.
    """
    t = (np.arange(-n_before, n_after + 1) - TROUGH_FRAMES) / FPS * 1e3    # ms from the trough
    w = -np.exp(-0.5 * (t / 0.1) ** 2) + 0.3 * np.exp(-0.5 * ((t - 0.44) / 0.25) ** 2)
    return w / -w.min()


class Signal:
    """Reproducible noise and spike waveforms for the 64 channels.

    Parameters
    ----------
    seed : seed of the noise and the per-channel amplitudes.
    noise_uv : noise standard deviation (uV).
    spike_uv : trough depth of a spike (uV) before the per-channel factor.
    uv_per_unit : uV per int16 sample unit.
    """

    def __init__(self, seed: int = 0, noise_uv: float = 2.5, spike_uv: float = 60.0,
                 uv_per_unit: float = UV_PER_UNIT) -> None:
        if not (noise_uv >= 0 and spike_uv >= 0 and uv_per_unit > 0):
            raise ValueError(f"noise_uv, spike_uv must be >= 0 uV and uv_per_unit > 0, got "
                             f"{noise_uv}, {spike_uv}, {uv_per_unit}")
        self.seed, self.uv_per_unit = int(seed), float(uv_per_unit)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EED]))
        bank = rng.standard_normal((_BANK_BLOCKS * FPS, N_CHANNELS), dtype=np.float32) * (noise_uv / uv_per_unit)
        bank[:, list(GROUNDED)] = 0.0
        self._bank = np.ascontiguousarray(np.round(bank).astype(np.int16).T)   # [64, frames]
        self.amplitude_units = (spike_uv / uv_per_unit) * rng.uniform(0.7, 1.3, N_CHANNELS)
        self.amplitude_units[list(GROUNDED)] = 0.0
        self._template = spike_template()
        self._blocks: dict[int, np.ndarray] = {}

    def _block(self, block: int) -> np.ndarray:
        """int16 ``[FPS, 64]`` noise of one-second block ``block``: the bank read from a seeded
        offset per channel (cached: reads go forward, so two blocks suffice)."""
        out = self._blocks.get(block)
        if out is None:
            if len(self._blocks) > 2:
                self._blocks.pop(min(self._blocks))
            # (1 << 40) + block: blocks before frame 0 (snippets of early spikes) need a non-negative seed too
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xB10C, block + (1 << 40)]))
            off = rng.integers(0, self._bank.shape[1], N_CHANNELS)
            out = np.empty((FPS, N_CHANNELS), np.int16)
            for c in range(N_CHANNELS):  # contiguous slices of the channel-major bank (wrapping around)
                out[:, c] = np.take(self._bank[c], np.arange(off[c], off[c] + FPS), mode="wrap")
            self._blocks[block] = out
        return out

    def noise(self, a: int, b: int) -> np.ndarray:
        """int16 ``[b - a, 64]`` noise of frames ``a..b-1`` (frame numbers may be negative)."""
        out = np.empty((b - a, N_CHANNELS), np.int16)
        f = a
        while f < b:
            block = f // FPS
            hi = min(b, (block + 1) * FPS)
            out[f - a:hi - a] = self._block(block)[f - block * FPS:hi - block * FPS]
            f = hi
        return out

    def frames(self, a: int, b: int, spike_frames: np.ndarray, spike_channels: np.ndarray) -> np.ndarray:
        """int16 ``[b - a, 64]`` frames ``a..b-1``: noise plus the waveform of every given spike that
        overlaps them (pass spikes with frames in ``[a - POST_FRAMES, b + PRE_FRAMES)``)."""
        if not len(spike_frames):
            return self.noise(a, b)
        out = self.noise(a, b).astype(np.float32)
        if len(spike_frames):
            k = np.arange(-PRE_FRAMES, POST_FRAMES + 1)
            rows = np.asarray(spike_frames, np.int64)[:, None] + k[None, :] - a        # [S, L]
            ch = np.broadcast_to(np.asarray(spike_channels, np.int64)[:, None], rows.shape)
            val = self._template[None, :] * self.amplitude_units[ch]
            ok = (rows >= 0) & (rows < b - a)
            np.add.at(out, (rows[ok], ch[ok]), val[ok])
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)

    def snippet_uv(self, frame: int, channel: int) -> np.ndarray:
        """float32 ``[75]`` uV snippet of one spike as cl-sdk stores it (25 frames before the spike, the
        spike frame, 49 after): the channel's noise plus the spike's own waveform."""
        a = frame - SNIPPET_BEFORE
        x = self.noise(a, a + SNIPPET_TOTAL)[:, channel].astype(np.float32)
        lo = SNIPPET_BEFORE - PRE_FRAMES
        x[lo:lo + len(self._template)] += self._template * self.amplitude_units[channel]
        return (x * self.uv_per_unit).astype(np.float32)
