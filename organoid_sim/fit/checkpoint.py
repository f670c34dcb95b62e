"""Interrupt-safe checkpoints of a fit: model tensors (safetensors) and progress (JSON), replaced
as a pair (:func:`organoid_sim.model_files.write_pair`: the JSON records the tensors' SHA-256), so
an interrupted fit always leaves a complete checkpoint whose progress is that of its tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ..model_files import WEIGHTS_SHA256, paired_bytes, write_pair
from ..nn.serialization import tensor_bytes, tensors_from_bytes

__all__ = ["Checkpointer"]

TENSORS = "checkpoint.safetensors"
PROGRESS = "checkpoint.json"


class Checkpointer:
    """Writes ``checkpoint.safetensors`` + ``checkpoint.json`` into ``directory`` (None: does nothing)."""

    def __init__(self, directory=None) -> None:
        self.directory = None if directory is None else Path(directory)

    def save(self, module: torch.nn.Module, stage: str, step: int, metrics: Mapping[str, Any]) -> None:
        """Save ``module.state_dict()`` and where the fit stands (stage name, step, metrics)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {"stage": stage, "step": int(step), "metrics": {k: float(v) for k, v in metrics.items()}}
        write_pair(self.directory / TENSORS, tensor_bytes(module.state_dict()), self.directory / PROGRESS,
                   lambda digest: json.dumps({**doc, WEIGHTS_SHA256: digest}, indent=2))

    def load(self, module: torch.nn.Module) -> dict | None:
        """Load the last checkpoint into ``module``; returns its progress dict or None if there is none."""
        if self.directory is None or not (self.directory / PROGRESS).exists():
            return None
        doc = json.loads((self.directory / PROGRESS).read_text())
        data = paired_bytes(self.directory / TENSORS, doc.get(WEIGHTS_SHA256), self.directory / PROGRESS)
        module.load_state_dict(tensors_from_bytes(data))
        return doc
