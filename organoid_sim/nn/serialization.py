"""Named tensors in safetensors files: raw arrays only, so loading never executes code."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..atomic import atomic_write_bytes

__all__ = ["save_tensors", "load_tensors", "tensor_bytes", "tensors_from_bytes"]


def tensor_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors file of ``tensors`` (moved to CPU, made contiguous) as bytes.

    Parameters
    ----------
    tensors : Mapping[str, torch.Tensor]
        Named tensors; any device, any layout.
    metadata : Mapping[str, str], optional
        String metadata stored in the file's header.

    Returns
    -------
    bytes
        What :func:`save_tensors` writes.
    """
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(flat, metadata=dict(metadata or {}))


def save_tensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Atomically write :func:`tensor_bytes` of ``tensors`` and ``metadata`` to ``path``.

    Parameters
    ----------
    path : Path
        The safetensors file, replaced by a temporary file's rename.
    tensors, metadata :
        As :func:`tensor_bytes` takes them.

    Returns
    -------
    None
    """
    atomic_write_bytes(Path(path), tensor_bytes(tensors, metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file (no code is executed).

    Parameters
    ----------
    path : Path
        A file written by :func:`save_tensors`.

    Returns
    -------
    dict[str, torch.Tensor]
        The named tensors, on the CPU.
    """
    from safetensors.torch import load_file

    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: model weights file not found")
    return load_file(str(path))


def tensors_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file's content (:func:`tensor_bytes`; no code is executed).

    Parameters
    ----------
    data : bytes
        The file's bytes.

    Returns
    -------
    dict[str, torch.Tensor]
        The named tensors, on the CPU.
    """
    from safetensors.torch import load

    return load(bytes(data))
