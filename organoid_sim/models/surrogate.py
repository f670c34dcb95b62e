"""Moved to :mod:`organoid_sim.nn.surrogate`; this re-export is kept for one release."""

from ..nn.surrogate import *  # noqa: F401,F403
from ..nn.surrogate import __all__  # noqa: F401
