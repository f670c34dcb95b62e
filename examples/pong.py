"""DishBrain-style pong played by a fitted model through a VirtualMEA (Kagan et al., Neuron 2022).

The closed loop, every tick (100 ticks/s of simulated time):

* **sensory encoding**: the ball's height is place-coded on the sensory electrodes (the left column
  of the array, e.g. of the 8x8 CL1 grid, one electrode per height band), and its distance to the paddle is rate-coded: the
  electrode fires pulses at 4 Hz when the ball is far and up to 40 Hz when it is about to reach the
  paddle;
* **motor decoding**: spikes of the units on the two motor regions (upper and lower halves of the
  right-hand columns) are counted over the tick; the paddle moves up when the upper region fired
  more, down when the lower region fired more;
* **feedback**: a hit gives a short predictable stimulus (all sensory electrodes, 100 Hz for 50 ms), a
  miss an unpredictable one (random electrodes at random times for 0.5 s), as in DishBrain.

A fitted model has no plasticity, so it is not expected to learn; this script shows the closed loop
end to end and reports the hit rate next to a chance baseline (the same game with a decoder that
ignores the spikes). Run ``python examples/pong.py --quick`` for a short game.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from organoid_sim.stimulation import CL1, BurstDesign, ChannelSet, StimDesign, VirtualMEA  # noqa: E402

TICKS_PER_SECOND = 100
PADDLE_HALF = 0.12      # half height of the paddle (field height 1)
PADDLE_SPEED = 0.02     # field heights per tick
BALL_SPEED = 0.012      # field widths per tick (about 0.8 s to cross)


@dataclass
class Pong:
    """The game: a unit square, the paddle on the left edge (x = 0), walls elsewhere."""

    rng: np.random.Generator
    ball: np.ndarray = field(default_factory=lambda: np.array([0.5, 0.5]))
    vel: np.ndarray = field(default_factory=lambda: np.array([-BALL_SPEED, 0.0]))
    paddle: float = 0.5
    hits: int = 0
    misses: int = 0
    rally: int = 0
    rallies: list = field(default_factory=list)

    def serve(self) -> None:
        """Ball from the right wall toward the paddle, random height and angle."""
        self.ball = np.array([1.0, self.rng.uniform(0.1, 0.9)])
        angle = self.rng.uniform(-0.6, 0.6)
        self.vel = BALL_SPEED * np.array([-np.cos(angle), np.sin(angle)]) / np.cos(angle)

    def step(self, move: int) -> str | None:
        """Move the paddle by ``move`` (-1, 0, +1) and the ball by one tick; returns 'hit', 'miss' or None."""
        self.paddle = float(np.clip(self.paddle + move * PADDLE_SPEED, PADDLE_HALF, 1 - PADDLE_HALF))
        self.ball = self.ball + self.vel
        if self.ball[1] < 0 or self.ball[1] > 1:            # top/bottom walls
            self.ball[1] = -self.ball[1] if self.ball[1] < 0 else 2 - self.ball[1]
            self.vel[1] = -self.vel[1]
        if self.ball[0] > 1:                                 # right wall
            self.ball[0], self.vel[0] = 2 - self.ball[0], -self.vel[0]
        if self.ball[0] <= 0:
            if abs(self.ball[1] - self.paddle) <= PADDLE_HALF:
                self.hits += 1
                self.rally += 1
                self.ball[0], self.vel[0] = -self.ball[0], -self.vel[0]
                return "hit"
            self.misses += 1
            self.rallies.append(self.rally)
            self.rally = 0
            self.serve()
            return "miss"
        return None


class Layout:
    """Sensory and motor electrodes from the array geometry (x to the right, y downwards, um).

    Sensory: the leftmost column, sorted by height (one electrode per height band). Motor: the
    recorded channels in the right half of the array, split into an upper and a lower region.
    """

    def __init__(self, electrodes, recorded_channels: np.ndarray) -> None:
        xy = electrodes.positions
        left = np.isclose(xy[:, 0], xy[:, 0].min())
        self.sensory = electrodes.ids[left][np.argsort(xy[left, 1])]
        rec_xy = electrodes.position_of(recorded_channels)
        right = rec_xy[:, 0] > np.median(xy[:, 0])
        mid = np.median(xy[:, 1])
        self.up = recorded_channels[right & (rec_xy[:, 1] < mid)]
        self.down = recorded_channels[right & (rec_xy[:, 1] >= mid)]
        if len(self.sensory) < 2 or not len(self.up) or not len(self.down):
            raise ValueError("pong needs a sensory column and recorded channels in both motor regions (right "
                             f"half, upper and lower); recorded channels: {sorted(recorded_channels.tolist())}")

    def sensory_channel(self, y: float) -> int:
        """Place code: the sensory electrode of the height band holding ``y`` (0 top .. 1 bottom)."""
        n = len(self.sensory)
        return int(self.sensory[min(int(y * n), n - 1)])


def play(model, seconds: float, seed: int, use_spikes: bool = True) -> dict:
    """Play ``seconds`` of simulated time; returns the score and loop figures."""
    rng = np.random.default_rng(seed)
    game = Pong(rng)
    game.serve()
    design = StimDesign(160, -1.0, 160, 1.0)
    mea = VirtualMEA(model, device=CL1, seed=seed, warmup_s=1.0)
    phase, n_stim, n_spikes = 0.0, 0, 0
    with mea.open() as neurons:
        layout = Layout(model.electrodes, np.unique(neurons.channels))
        feedback_until, last_pulse = -1.0, {}
        for tick in neurons.loop(TICKS_PER_SECOND, stop_after_seconds=seconds):
            n_spikes += len(tick.times)
            if use_spikes:
                up, down = tick.spike_counts(layout.up).sum(), tick.spike_counts(layout.down).sum()
                move = int(np.sign(down - up))                  # y grows downwards
            else:
                move = int(rng.integers(-1, 2))
            event = game.step(move)
            now = tick.stop_s
            if event == "hit":
                neurons.stim(ChannelSet(layout.sensory), design, BurstDesign(5, 100))
                feedback_until = now + 0.05 + 0.01
                n_stim += 5 * len(layout.sensory)
            elif event == "miss":
                # unpredictable feedback: single pulses on random electrodes at random ticks
                feedback_until = now + 0.5
            if now < feedback_until and event is None and feedback_until - now > 0.1:
                if rng.random() < 0.3:
                    ch = int(rng.choice(layout.sensory))
                    if now - last_pulse.get(ch, -1.0) > 0.006:
                        neurons.stim(ch, design)
                        last_pulse[ch] = now
                        n_stim += 1
                continue
            if now < feedback_until:
                continue
            # sensory coding: rate 4..40 Hz growing as the ball approaches the paddle
            phase += (4.0 + 36.0 * (1.0 - game.ball[0])) / TICKS_PER_SECOND
            if phase >= 1.0:
                phase -= 1.0
                ch = layout.sensory_channel(game.ball[1])
                if now - last_pulse.get(ch, -1.0) > 0.006:
                    neurons.stim(ch, design)
                    last_pulse[ch] = now
                    n_stim += 1
        session = neurons.recording()
    rallies = game.rallies + [game.rally]
    return {"seconds": seconds, "hits": game.hits, "misses": game.misses,
            "hit_rate": game.hits / max(game.hits + game.misses, 1), "mean_rally": float(np.mean(rallies)),
            "pulses": len(session.stim), "spikes": session.n_spikes, "decoder": "spikes" if use_spikes else "random"}


def main(argv: list[str] | None = None) -> int:
    """Command line: fit (or load) a model, play, print the score (JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short game on a small quickly fitted model")
    ap.add_argument("--model", default=None, help="model folder (default: fit one on the bundled sample)")
    ap.add_argument("--seconds", type=float, default=None, help="simulated seconds to play (default 60; quick 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fit, the game and the model (default 0)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 60.0)
    model = _common.get_model(args.model, quick=args.quick, seed=args.seed, progress=not args.no_progress)
    result = play(model, seconds, args.seed)
    baseline = play(model, seconds, args.seed, use_spikes=False)
    print(f"pong, {seconds:g} s simulated: {result['hits']} hits / {result['misses']} misses "
          f"(hit rate {result['hit_rate']:.2f}; random paddle {baseline['hit_rate']:.2f}), "
          f"{result['pulses']} pulses delivered, {result['spikes']} spikes decoded")
    if args.json:
        print(json.dumps({"model": result, "random_paddle": baseline}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
