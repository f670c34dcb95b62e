"""Interrupt-safe checkpoints of a fit: model tensors (safetensors) and progress (JSON), both
written atomically, the JSON last, so an interrupted fit always leaves a complete checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ..atomic import atomic_write_bytes
from ..nn.serialization import load_tensors, save_tensors

__all__ = ["Checkpointer"]


class Checkpointer:
    """Writes ``checkpoint.safetensors`` + ``checkpoint.json`` into ``directory`` (None: does nothing)."""

    def __init__(self, directory=None) -> None:
        self.directory = None if directory is None else Path(directory)

    def save(self, module: torch.nn.Module, stage: str, step: int, metrics: Mapping[str, Any]) -> None:
        """Save ``module.state_dict()`` and where the fit stands (stage name, step, metrics)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        save_tensors(self.directory / "checkpoint.safetensors", module.state_dict())
        doc = {"stage": stage, "step": int(step), "metrics": {k: float(v) for k, v in metrics.items()}}
        atomic_write_bytes(self.directory / "checkpoint.json", json.dumps(doc, indent=2).encode())

    def load(self, module: torch.nn.Module) -> dict | None:
        """Load the last checkpoint into ``module``; returns its progress dict or None if there is none."""
        if self.directory is None or not (self.directory / "checkpoint.json").exists():
            return None
        doc = json.loads((self.directory / "checkpoint.json").read_text())
        module.load_state_dict(load_tensors(self.directory / "checkpoint.safetensors"))
        return doc
