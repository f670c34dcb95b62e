"""A plain Cortical Labs cl-sdk closed loop: stimulate one channel whenever another one spikes.

This is a script for the CL1 rig (``pip install cl-sdk``, Python >= 3.12) and imports nothing but
cl-sdk. On the rig it stimulates the cells; on a laptop cl-sdk's simulator runs it. To run it on a
model fitted with organoid-sim (saved with ``model.save(MODEL_DIR)``), point cl-sdk's simulator at
the model's data source; the script does not change::

    CL_SDK_DATA_SOURCE=organoid_sim.cl:source \\
    CL_SDK_DATA_SOURCE_CONFIG='{"model": "MODEL_DIR", "seed": 0}' \\
    CL_SDK_ACCELERATED_TIME=1 python examples/cl_closed_loop.py --seconds 30

Every tick (100 per second) the detected spikes are read; a spike on the trigger channel starts a
biphasic pulse (1 uA, 160 us per phase) on the target channel, at most one per ``--dead-ms``. The
session is recorded (``neurons.record``); the summary line gives the spikes, the pulses and how
much faster than real time the loop ran.
"""

from __future__ import annotations

import argparse
import time

import cl
from cl import ChannelSet, StimDesign


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the session (s)")
    ap.add_argument("--trigger", type=int, default=18, help="channel whose spikes trigger a pulse")
    ap.add_argument("--target", type=int, default=27, help="channel that is stimulated")
    ap.add_argument("--dead-ms", type=float, default=20.0, help="shortest time between two pulses (ms)")
    ap.add_argument("--ticks", type=int, default=100, help="loop ticks per second")
    args = ap.parse_args()

    design = StimDesign(160, -1.0, 160, 1.0)
    n_spikes = n_stims = 0
    last = None
    with cl.open() as neurons:
        fps = neurons.get_frames_per_second()
        dead = int(args.dead_ms * 1e-3 * fps)
        recording = neurons.record(stop_after_seconds=args.seconds)
        start = time.perf_counter()
        for tick in neurons.loop(ticks_per_second=args.ticks, stop_after_seconds=args.seconds):
            for spike in tick.analysis.spikes:
                n_spikes += 1
                if spike.channel == args.trigger and (last is None or spike.timestamp - last >= dead):
                    neurons.stim(ChannelSet(args.target), design)
                    last = spike.timestamp
                    n_stims += 1
        wall = time.perf_counter() - start
        recording.wait_until_stopped()
    print(f"recording: {recording.file['path']}")
    print(f"{args.seconds:g} s session: {n_spikes} spikes, {n_stims} stims on channel {args.target}; "
          f"loop {wall:.2f} s wall = {args.seconds / wall:.1f}x real time")


if __name__ == "__main__":
    main()
