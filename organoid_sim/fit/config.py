"""Settings of a network fit as frozen dataclasses, and the named constants of the fitting stages.

:class:`FitConfig` holds every option of :func:`organoid_sim.fit.fit_network` (and so the fit
options of :class:`~organoid_sim.models.SpikingNetworkModel`); :class:`RefineConfig` those of
:func:`organoid_sim.fit.refine.refine_free_running`. Both are immutable: derive a variant with
``dataclasses.replace(config, name=value)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["FitConfig", "RefineConfig", "CALIBRATION_CHOICES", "DEFAULT_BURST_VARIANTS", "RESTART_SEED_STRIDE",
           "DISCREPANCY_SEED_OFFSET", "DISCREPANCY_PARALLEL", "DISCREPANCY_RULES",
           "DISCREPANCY_BURN_IN_S", "SELF_CHECK_SEED_OFFSET", "GRAD_CLIP_NORM", "LOSS_SMOOTHING", "MIN_BEST_STEP", "CHECKPOINT_EVERY",
           "REFINE_NOISE_SEED_OFFSET", "REFINE_BURN_IN_SEED_OFFSET"]

#: restart ``k`` of stages 2-3 runs with seed ``seed + RESTART_SEED_STRIDE * k``
RESTART_SEED_STRIDE = 1000
#: how the guard picks among accepted calibrated candidates (:attr:`FitConfig.calibration_choice`)
CALIBRATION_CHOICES = ("first", "closest")
#: how "closest" is measured (:attr:`FitConfig.discrepancy_rule`)
DISCREPANCY_RULES = ("sum", "bars")
#: the default further burst calibration: the burst-rate error moves ``U`` and the duration error
#: the recovery (``burst_pairing="rate-U"`` of :func:`~organoid_sim.fit.calibrate.calibrate_rates`), full steps;
#: which depression parameter moves a culture's burst rate differs between cultures (docs/models.md)
DEFAULT_BURST_VARIANTS = (MappingProxyType({"burst_pairing": "rate-U", "burst_gain": 1.0}),)
#: the restart-choosing simulation of a candidate with seed ``s`` uses seed ``s + DISCREPANCY_SEED_OFFSET``
DISCREPANCY_SEED_OFFSET = 7
#: trajectories side by side and burn-in (s) of that simulation
DISCREPANCY_PARALLEL = 8
DISCREPANCY_BURN_IN_S = 5.0
#: refinement: largest gradient norm of an Adam step (``torch.nn.utils.clip_grad_norm_``)
GRAD_CLIP_NORM = 1.0
#: refinement: exponential smoothing of the loss terms, ``smooth = keep * smooth + new_weight * new``
#: as ``(keep, new_weight)``
LOSS_SMOOTHING = (0.7, 0.3)
#: refinement: seed offsets of the spike-sampling noise and of the burn-in run
REFINE_NOISE_SEED_OFFSET = 1
REFINE_BURN_IN_SEED_OFFSET = 2
#: refinement: the best iterate is looked for from this step on (the first ones are transients)
MIN_BEST_STEP = 3
#: the self-check's simulation uses seed ``seed + SELF_CHECK_SEED_OFFSET``
SELF_CHECK_SEED_OFFSET = 11
#: refinement: a checkpoint every this many steps
CHECKPOINT_EVERY = 10
#: likelihood guard: a calibrated candidate whose calibration simulations ended with a median rate
#: error above this (a fraction: 1 = rates off by 2x) is not kept whatever its likelihood: its
#: free-running network ran away or fell silent, which the teacher-forced likelihood cannot see
MAX_CALIBRATED_RATE_ERR = 1.0
#: bits/spike a teacher-forced epoch must gain on the early-stopping part to count as progress
#: (three epochs without it end stage 1)
TF_MIN_IMPROVEMENT_BITS = 1e-3


@dataclass(frozen=True)
class RefineConfig:
    """Options of free-running refinement (:func:`organoid_sim.fit.refine.refine_free_running`).

    Parameters
    ----------
    steps : int
        Adam steps.
    batch : int
        Trajectories simulated side by side per step.
    window_s : float
        Length (s) of each trajectory's window per step.
    bin_ms : float
        Bin (ms) of the summary statistics.
    n_lags : int
        Lags (bins) of the population-rate autocovariance.
    lr : float
        Adam learning rate.
    burn_in_s : float
        Simulated time (s) before the first step, from rest.
    weights : Mapping or "noise", optional
        Weights of the loss terms (:func:`organoid_sim.fit.summary.loss_weights`); ``"noise"``: set
        from the recording's own variability (:func:`organoid_sim.fit.refine.noise_weights`, an
        ablation, not the default).
    likelihood_weight : float
        Weight of the teacher-forced negative log-likelihood anchor (0: none).
    validation_fraction : float
        Last part of the counts kept out of the likelihood anchor.
    burst : tuple of (float, int), optional
        ``(max_isi_n in s, n_spikes)`` of the data's ISI_N burst detector; with it the loss
        matches the burst persistence.
    persistence_ms : float
        Horizon (ms) of the burst persistence.
    average_from : float, optional
        Fraction of ``steps`` after which the parameters are averaged (Polyak-Ruppert); None:
        keep the best iterate.
    """

    steps: int = 60
    batch: int = 16
    window_s: float = 2.0
    bin_ms: float = 10.0
    n_lags: int = 100
    lr: float = 0.01
    burn_in_s: float = 2.0
    weights: Mapping | None = None
    likelihood_weight: float = 1.0
    validation_fraction: float = 0.0
    burst: tuple | None = None
    persistence_ms: float = 60.0
    average_from: float | None = None


@dataclass(frozen=True)
class FitConfig:
    """Options of :func:`organoid_sim.fit.fit_network` (see there for the stages).

    Parameters
    ----------
    max_epochs : int
        Teacher-forced L-BFGS epochs (stage 1).
    validation_fraction : float
        Last part of the window held out for early stopping and the likelihood guard.
    refine_steps, refine_batch : int
        Refinement Adam steps and trajectories per step (stage 2; 0 steps: no refinement).
    refine_window_s : float
        Refinement window per trajectory (s).
    likelihood_weight : float
        Weight of the teacher-forced likelihood anchor during refinement.
    refine_options : Mapping, optional
        More :class:`RefineConfig` fields, by name.
    calibration_rounds : int
        Rate-calibration rounds (stage 3).
    calibration_options : Mapping, optional
        More :func:`organoid_sim.fit.calibrate.calibrate_rates` arguments, by name.
    max_likelihood_loss : float, optional
        Largest held-out loss (bits/spike) stages 2-3 may cost before they are undone; None: no guard.
    partial_burst_fractions : sequence of float
        When the guard undoes a burst calibration, the parts of its move of the depression (``U``
        as log-odds, ``tau_rec`` as log) tried in turn, each with the biases calibrated again for the
        rates, before the rates-only candidate (empty: straight to rates only).
    burst_variants : sequence of Mapping
        Further burst calibrations, each a dict of
        :func:`~organoid_sim.fit.calibrate.calibrate_rates` options over ``calibration_options``
        tried after the configured one and before its partial moves (default
        :data:`DEFAULT_BURST_VARIANTS`, the swapped pairing at full steps; empty: none).
    calibration_choice : {"first", "closest"}
        Which of the calibrated candidates the guard keeps (:func:`organoid_sim.fit.calibrate_with_guard`):
        ``"closest"`` (default), of those it accepts from one start, the one whose free-running
        simulation of the fitting window lies closest to it (the restarts' measure), so a rates-only
        candidate can win over an accepted burst calibration; ``"first"``, the first it accepts
        (burst-calibrated before rates only).
    discrepancy_sim_factor : float
        Simulated time (in durations of the fitting window) of the free-running simulation that
        measures how far a candidate lies from the window (``calibration_choice="closest"`` and
        ``restarts``).
    discrepancy_rule : {"sum", "bars"}
        How far: ``"sum"`` (default), the sum of the absolute burst-rate and burst-duration
        errors, ``1 - r`` of the correlations and the median rate error; ``"bars"``, the number of
        in-sample bars that simulation misses, ties broken by that sum (``n + s / (1 + s)``).
    restarts : int
        Independent runs of stages 2-3; the one closest to the recording is kept.
    checkpoint_dir : path, optional
        Where to keep interrupt-safe checkpoints.
    seed : int
        Seed of all fitting randomness.
    device : str or torch.device, optional
        Where to fit (default: where the model is).
    progress : bool
        Show progress bars.
    self_check : bool
        After fitting, simulate the fitting window and judge it with the in-sample bars
        (:mod:`organoid_sim.fit.self_check`, stored in ``provenance["self_check"]``).
    """

    max_epochs: int = 30
    validation_fraction: float = 0.1
    refine_steps: int = 60
    refine_batch: int = 16
    refine_window_s: float = 2.0
    likelihood_weight: float = 1.0
    refine_options: Mapping | None = None
    calibration_rounds: int = 12
    calibration_options: Mapping | None = None
    max_likelihood_loss: float | None = 0.25
    partial_burst_fractions: tuple = ()
    burst_variants: tuple = DEFAULT_BURST_VARIANTS
    calibration_choice: str = "closest"
    discrepancy_sim_factor: float = 1.0
    discrepancy_rule: str = "sum"
    restarts: int = 1
    checkpoint_dir: Any = None
    seed: int = 0
    device: Any = None
    progress: bool = True
    self_check: bool = True

    def __post_init__(self) -> None:
        if int(self.restarts) < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}")
        if not float(self.discrepancy_sim_factor) > 0:
            raise ValueError(f"discrepancy_sim_factor must be > 0 window durations, "
                             f"got {self.discrepancy_sim_factor}")
        if self.discrepancy_rule not in DISCREPANCY_RULES:
            raise ValueError(f"discrepancy_rule must be one of {DISCREPANCY_RULES}, got {self.discrepancy_rule!r}")
        fractions = tuple(float(f) for f in self.partial_burst_fractions)
        if not all(0.0 < f < 1.0 for f in fractions):
            raise ValueError(f"partial_burst_fractions must lie in (0, 1), got {self.partial_burst_fractions}")
        object.__setattr__(self, "partial_burst_fractions", fractions)
        object.__setattr__(self, "burst_variants", tuple(dict(v) for v in self.burst_variants))
        if self.calibration_choice not in CALIBRATION_CHOICES:
            raise ValueError(f"calibration_choice must be one of {CALIBRATION_CHOICES}, "
                             f"got {self.calibration_choice!r}")
        if self.refine_options is not None:
            known = {f.name for f in fields(RefineConfig)}
            unknown = sorted(set(self.refine_options) - known)
            if unknown:
                raise TypeError(f"refine_options: unknown option(s) {unknown}; valid: {sorted(known)}")

    def refine_config(self, **extra) -> RefineConfig:
        """The :class:`RefineConfig` of stage 2: this config's refinement fields, then
        ``refine_options``, then ``extra``.

        Parameters
        ----------
        **extra
            :class:`RefineConfig` fields set last (e.g. ``burst``).

        Returns
        -------
        RefineConfig
        """
        return RefineConfig(**{"steps": self.refine_steps, "batch": self.refine_batch,
                               "window_s": self.refine_window_s, "likelihood_weight": self.likelihood_weight,
                               "validation_fraction": self.validation_fraction,
                               **dict(self.refine_options or {}), **extra})

    def settings(self) -> dict:
        """The figures recorded in a fitted model's provenance (``fit_settings``).

        Returns
        -------
        dict
            ``max_epochs``, ``validation_fraction``, the refinement and calibration settings and
            options, the likelihood guard, ``restarts``, ``self_check`` and ``seed``: every fit
            option but where the fit ran, so that a loaded model's ``get_params()`` refits the same.
        """
        opts = lambda o: None if o is None else dict(o)  # noqa: E731  (JSON: no mapping proxies)
        return dict(max_epochs=self.max_epochs, validation_fraction=self.validation_fraction,
                    refine_steps=self.refine_steps, refine_batch=self.refine_batch,
                    refine_window_s=self.refine_window_s, likelihood_weight=self.likelihood_weight,
                    refine_options=opts(self.refine_options), calibration_rounds=self.calibration_rounds,
                    calibration_options=opts(self.calibration_options),
                    max_likelihood_loss=self.max_likelihood_loss,
                    partial_burst_fractions=list(self.partial_burst_fractions),
                    burst_variants=[dict(v) for v in self.burst_variants],
                    calibration_choice=self.calibration_choice,
                    discrepancy_sim_factor=self.discrepancy_sim_factor, discrepancy_rule=self.discrepancy_rule,
                    restarts=self.restarts, self_check=self.self_check,
                    seed=self.seed)
