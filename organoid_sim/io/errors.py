"""Errors raised by the readers and writers of :mod:`organoid_sim.io`.

Every error names the file, the dataset (HDF5 path, MATLAB field, CSV line, ...) and the problem,
so a user can tell at once which part of which file is wrong.
"""

from __future__ import annotations

import os

__all__ = ["RecordingFormatError", "UnknownFormatError", "ReaderOptionError"]


class RecordingFormatError(ValueError):
    """A recording file is unreadable, incomplete or inconsistent.

    ``path``, ``dataset`` and ``problem`` are kept as attributes; the message joins them.
    """

    def __init__(self, path: str | os.PathLike, dataset: str | None, problem: str) -> None:
        self.path = os.fspath(path)
        self.dataset = dataset
        self.problem = problem
        where = f", dataset {dataset!r}" if dataset else ""
        super().__init__(f"{self.path}{where}: {problem}")

    def __reduce__(self):  # keep the three-argument constructor usable by copy/multiprocessing
        return (type(self), (self.path, self.dataset, self.problem))


class UnknownFormatError(RecordingFormatError):
    """The file's content matches none of the formats this package reads."""


class ReaderOptionError(TypeError, ValueError):
    """An option the chosen reader or writer does not take (e.g. ``well=`` for an NWB file).

    A ``TypeError`` like any wrong keyword argument, and a ``ValueError`` so the command line
    reports it as a one-line error.
    """
