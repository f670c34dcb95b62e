"""Moved to :mod:`organoid_sim.nn.neurons`; this re-export is kept for one release."""

from ..nn.neurons import *  # noqa: F401,F403
from ..nn.neurons import __all__  # noqa: F401
