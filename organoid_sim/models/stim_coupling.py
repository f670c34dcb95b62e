"""Moved to :mod:`organoid_sim.nn.stim_coupling`; this re-export is kept for one release."""

from ..nn.stim_coupling import *  # noqa: F401,F403
from ..nn.stim_coupling import __all__  # noqa: F401
