"""Checkpoints and models that load without executing code: safetensors + JSON, never pickle.

A Lightning checkpoint is a nested structure of dicts, lists, numbers, strings and tensors
(weights, optimiser moments, loop counters). `encode` replaces each tensor by a reference into a
safetensors table and keeps the rest as a JSON skeleton, stored in the same file's metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors import safe_open
from safetensors.torch import save_file

from astrovader.atomic import write_with
from astrovader.errors import InputError

SKELETON_KEY = "astrovader_skeleton"


def _to_skeleton(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able skeleton of `value`; tensors are moved into `tensors`."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        # Clone: safetensors refuses tensors that share storage (tied or viewed weights).
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": _to_skeleton(torch.from_numpy(np.ascontiguousarray(value)), tensors)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {"__dict__": [[_to_skeleton(key, tensors), _to_skeleton(item, tensors)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_to_skeleton(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_to_skeleton(item, tensors) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a safe checkpoint")


def _from_skeleton(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, list):
        return [_from_skeleton(item, tensors) for item in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__ndarray__" in skeleton:
        return _from_skeleton(skeleton["__ndarray__"], tensors).numpy()
    if "__tuple__" in skeleton:
        return tuple(_from_skeleton(item, tensors) for item in skeleton["__tuple__"])
    return {_from_skeleton(key, tensors): _from_skeleton(item, tensors) for key, item in skeleton["__dict__"]}


def save_safe(value: Any, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `value` atomically as one safetensors file (tensors + JSON skeleton)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _to_skeleton(value, tensors)
    header = {SKELETON_KEY: json.dumps(skeleton), **(metadata or {})}
    return write_with(Path(path), lambda temporary: save_file(tensors, str(temporary), metadata=header))


def load_safe(path: Path, device: str = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - any parse failure means a bad file
        raise InputError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    if SKELETON_KEY not in metadata:
        raise InputError(f"{path}: safetensors file without an astrovader skeleton")
    return _from_skeleton(json.loads(metadata[SKELETON_KEY]), tensors)


class SafeCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O through `save_safe` / `load_safe`: atomic and pickle-free."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_safe(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_safe(Path(path))

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)
