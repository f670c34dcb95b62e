"""Moved to :mod:`organoid_sim.nn.observation`; this re-export is kept for one release."""

from ..nn.observation import *  # noqa: F401,F403
from ..nn.observation import __all__  # noqa: F401
