"""Moved to :mod:`organoid_sim.nn.filters`; this re-export is kept for one release."""

from ..nn.filters import *  # noqa: F401,F403
from ..nn.filters import __all__  # noqa: F401
