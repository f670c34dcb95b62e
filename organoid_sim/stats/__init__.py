"""MEA statistics: per unit, pairwise, network bursts, avalanches, evoked responses, describe/compare.

Every statistic that elephant also computes (rates, ISI CV, LV, Fano factor, correlation
coefficient, STTC, cross-correlogram) uses elephant's definition and binning rule and is tested
against it on real data. Times are seconds unless a name says otherwise (``bin_ms``).
"""

from ._common import InsufficientSpikesWarning
from .avalanches import Avalanches, PowerLawFit, avalanches, branching_ratio, fit_power_law
from .bursts import NetworkBursts, burst_statistics, detect_bursts, population_rate
from .evoked import (EVOKED_WINDOW, PSTH, EvokedResponses, evoked_agreement, evoked_responses,
                     first_spike_latencies, psth)
from .pairwise import (correlation_matrix, cross_correlogram, functional_connectivity, jitter, population_coupling,
                       population_coupling_of_counts, sttc, tiling_fraction)
from .single_unit import burstiness_index, cv_isi, fano_factor, firing_rates, isi, isi_per_unit, lv
from .summary import DEFAULT_TOLERANCES, Comparison, Description, burst_count_p, compare, describe

__all__ = [
    "InsufficientSpikesWarning",
    "firing_rates", "isi", "isi_per_unit", "cv_isi", "lv", "fano_factor", "burstiness_index",
    "correlation_matrix", "population_coupling", "population_coupling_of_counts", "sttc", "tiling_fraction",
    "cross_correlogram", "functional_connectivity", "jitter",
    "population_rate", "NetworkBursts", "detect_bursts", "burst_statistics",
    "Avalanches", "PowerLawFit", "avalanches", "fit_power_law", "branching_ratio",
    "PSTH", "psth", "EvokedResponses", "evoked_responses", "first_spike_latencies", "evoked_agreement",
    "EVOKED_WINDOW",
    "Description", "describe", "Comparison", "compare", "DEFAULT_TOLERANCES", "burst_count_p",
]
