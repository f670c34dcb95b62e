"""JSON for the package's records: NumPy scalars and arrays, tuples, sets, bytes and paths written
as plain JSON values, and undefined (non-finite) figures as ``null``."""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["json_default", "finite_or_none"]


def json_default(o: Any) -> Any:
    """``default=`` hook of :func:`json.dumps` for the values the package stores.

    Parameters
    ----------
    o : Any
        A value :mod:`json` cannot write itself.

    Returns
    -------
    Any
        A JSON-native equivalent: NumPy scalars -> Python scalars; arrays, tensors (anything with
        ``tolist``), tuples and sets -> lists; bytes -> text (UTF-8, invalid bytes replaced);
        paths -> text. Anything else raises ``TypeError`` naming its type.
    """
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    if isinstance(o, PurePath):
        return str(o)
    if callable(getattr(o, "tolist", None)):  # np.ndarray, torch.Tensor
        return o.tolist()
    raise TypeError(f"a value of type {type(o).__name__} is not JSON-serialisable")


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) inside dicts and lists replaced by None.

    Parameters
    ----------
    obj : Any
        Nested dicts, lists and tuples of JSON values (NumPy scalars included).

    Returns
    -------
    Any
        The same structure (tuples become lists), safe for ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
