"""Size limits of a request (a simulation, a stimulation protocol), checked before any work starts.

A request is estimated first (the arrays it will hold: simulated counts of ``steps x neurons``,
one table row per delivered pulse) and refused with :class:`RequestTooLargeError` when the
estimate passes the limit, so a typing slip (``n_pulses: 100000000``, ``--duration 1e9``) fails at
once instead of filling the memory. The limit is :data:`DEFAULT_MAX_REQUEST_GB` (2 GB) unless
the environment variable ``ORGANOID_SIM_MAX_REQUEST_GB`` or :func:`set_max_request_gb` (the
command line's ``--max-request-gb``) sets another; ``inf`` switches the check off.
"""

from __future__ import annotations

import math
import os

__all__ = ["RequestTooLargeError", "DEFAULT_MAX_REQUEST_GB", "max_request_gb", "set_max_request_gb",
           "check_request", "BYTES_PER_PULSE", "BYTES_PER_COUNT"]

#: default limit of one request's estimated memory, in GB (1e9 bytes)
DEFAULT_MAX_REQUEST_GB = 2.0
#: memory of one delivered pulse while a protocol is flattened and checked (Python tuples, table row)
BYTES_PER_PULSE = 400
#: memory of one simulated ``(step, neuron)`` count (int64)
BYTES_PER_COUNT = 8
ENV_VAR = "ORGANOID_SIM_MAX_REQUEST_GB"

_override: float | None = None


class RequestTooLargeError(ValueError):
    """A request whose estimated memory passes the limit (see the module docstring)."""


def set_max_request_gb(gb: float | None) -> None:
    """Set the limit for this process in GB (``None``: back to the environment or the default).

    Parameters
    ----------
    gb : float or None
        Largest estimated memory of one request, in GB (1e9 bytes); ``math.inf`` disables the check.
    """
    global _override
    if gb is not None and not (gb > 0):  # also refuses NaN
        raise ValueError(f"the request-size limit must be a positive number of GB, got {gb}")
    _override = None if gb is None else float(gb)


def max_request_gb() -> float:
    """The limit in force, in GB: :func:`set_max_request_gb`, else ``$ORGANOID_SIM_MAX_REQUEST_GB``,
    else :data:`DEFAULT_MAX_REQUEST_GB`.

    Returns
    -------
    float
        Largest estimated memory of one request, in GB.
    """
    if _override is not None:
        return _override
    text = os.environ.get(ENV_VAR)
    if text is None:
        return DEFAULT_MAX_REQUEST_GB
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{ENV_VAR}={text!r}: must be a positive number of GB")
    return value


def check_request(what: str, n_bytes: float, detail: str) -> None:
    """Raise :class:`RequestTooLargeError` when ``n_bytes`` passes the limit.

    Parameters
    ----------
    what : str
        The request, as the user wrote it (e.g. ``"protocol 'probe'"``).
    n_bytes : float
        Its estimated memory in bytes.
    detail : str
        Where the estimate comes from (e.g. ``"120,000,000 pulses"``).
    """
    limit = max_request_gb()
    if math.isfinite(limit) and n_bytes > limit * 1e9:
        raise RequestTooLargeError(
            f"{what}: {detail} would need about {n_bytes / 1e9:.3g} GB, more than the {limit:g} GB limit; "
            f"shorten the request, or raise the limit ({ENV_VAR}, --max-request-gb, "
            "organoid_sim.limits.set_max_request_gb)")
