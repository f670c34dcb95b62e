"""``python -m organoid_sim.synthetic --out data_samples``: regenerate the bundled sample files."""

import argparse

from .samples import write_data_samples


def main(argv=None) -> None:
    """Parse arguments and write the sample files."""
    ap = argparse.ArgumentParser(prog="python -m organoid_sim.synthetic", description=__doc__)
    ap.add_argument("--out", default="data_samples", help="output folder (default data_samples)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spontaneous-s", type=float, default=300.0, help="spontaneous recording length (s)")
    ap.add_argument("--repeats", type=int, default=8, help="pulses per electrode x amplitude in the session")
    ap.add_argument("--trials", type=int, default=100, help="trials per condition for the true responses")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the per-step tensors are small, more threads only add overhead)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    paths = write_data_samples(a.out, seed=a.seed, spontaneous_s=a.spontaneous_s, n_repeats=a.repeats,
                               n_trials=a.trials, progress=not a.no_progress)
    for name, p in paths.items():
        print(f"{name}: {p}")


if __name__ == "__main__":
    main()
