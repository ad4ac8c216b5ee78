"""What an analysis of a trained run (`runs.Run`) works on: the analysed objects (mu_z, gamma,
reconstruction error and the catalogue columns carried with them), taken from a predictions
table or computed from a cache split. Both paths give the same `Objects`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from astrovader.data.cache import Cache, decode_files
from astrovader.data.loader import read_rows, to_float
from astrovader.errors import InputError
from astrovader.model.inference import model_outputs
from astrovader.model.vade import VaDE
from astrovader.predict import read_predictions

CHUNK = 2048  # rows read and encoded at a time: bounded memory on large caches


def encode_rows(model: VaDE, cache: Cache, rows: np.ndarray, reconstruct: bool = False,
                progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """`model.inference.model_outputs` of cache rows, read and encoded CHUNK rows at a time."""
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(rows), CHUNK):
        parts.append(model_outputs(model, read_rows(cache.images, rows[start : start + CHUNK]), reconstruct))
        if progress is not None:
            progress(min(start + CHUNK, len(rows)), len(rows))
    if not parts:
        return model_outputs(model, np.zeros((0, *cache.images.shape[1:]), np.uint8), reconstruct)
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


@dataclass
class Objects:
    """One row per analysed object: `table` holds id_str and the carried catalogue columns
    (labels, file_loc, ...), aligned with mu (N, J), gamma (N, K), and mse and log_likelihood
    (N,) or None."""

    table: pd.DataFrame
    mu: np.ndarray
    gamma: np.ndarray
    mse: np.ndarray | None
    source: str
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    log_likelihood: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.table)

    @cached_property
    def components(self) -> np.ndarray:
        return self.gamma.argmax(axis=1)


def objects_from_cache(model: VaDE, cache: Cache, split: str = "test",
                       progress: Callable[[int, int], None] | None = None) -> Objects:
    index = cache.split(split).reset_index(drop=True)
    if index.empty:
        raise InputError(f"{cache.folder}: the {split!r} split is empty; choose another with --split")
    outputs = encode_rows(model, cache, index["row"].to_numpy(), reconstruct=True, progress=progress)
    table = index.drop(columns=["row"])
    return Objects(table, outputs["mu"], outputs["gamma"], outputs["mse"], f"{cache.folder} ({split} split)",
                   log_likelihood=outputs["log_likelihood"])


def numbered_columns(frame: pd.DataFrame, prefix: str) -> list[str]:
    """'gamma_00', 'gamma_01', ... in numeric order."""
    pattern = re.compile(rf"^{prefix}_(\d+)$")
    found = [(int(match.group(1)), name) for name in frame.columns if (match := pattern.match(str(name)))]
    return [name for _, name in sorted(found)]


def objects_from_predictions(path: str | Path, split: str | None = "test") -> Objects:
    """Objects from an `astrovader predict` table (rows of `split` when it has a split column)."""
    path = Path(path)
    frame = read_predictions(path)
    if split not in (None, "all") and "split" in frame.columns:
        frame = frame[frame["split"] == split]
        if frame.empty:
            raise InputError(f"{path}: no rows in the {split!r} split; choose another with --split (or all)")
    notes = []
    if "error" in frame.columns:
        failed = frame["error"].notna() & frame["error"].astype(str).ne("")
        if failed.any():  # objects the model could not read carry no outputs
            notes.append(f"{int(failed.sum())} objects of {path.name} have an error and no outputs; left out")
        frame = frame[~failed]
    mu_columns, gamma_columns = numbered_columns(frame, "mu"), numbered_columns(frame, "gamma")
    for name, columns in (("mu", mu_columns), ("gamma", gamma_columns), ("id_str", ["id_str"] if "id_str" in frame else [])):
        if not columns:
            raise InputError(f"{path}: no {name} column(s) (expected the `astrovader predict` columns)")
    frame = frame.reset_index(drop=True)
    numeric = [*mu_columns, *gamma_columns, *numbered_columns(frame, "posterior"), *numbered_columns(frame, "logvar")]
    carried = frame.drop(columns=numeric)
    mse, likelihood = (frame[name].to_numpy(np.float64) if name in frame else None for name in ("mse", "log_likelihood"))
    return Objects(carried, frame[mu_columns].to_numpy(np.float32), frame[gamma_columns].to_numpy(np.float32),
                   mse, str(path), notes, likelihood)


class ImageSource:
    """Model-ready pixels of objects by id: rows of the cache, else their `file_loc` decoded
    with the model's preprocessing (None when an object has neither)."""

    def __init__(self, table: pd.DataFrame, cache: Cache | None, data_config):
        self.table = table
        self.cache = cache
        self.data_config = data_config
        self.rows = pd.Series(cache.index["row"].to_numpy(), index=cache.index["id_str"]) if cache else pd.Series(dtype=np.int64)

    def pixels(self, positions: np.ndarray) -> np.ndarray | None:
        """Float pixels (n, C, H, W) in [0, 1] of table positions, or None if any is unavailable."""
        ids = self.table["id_str"].to_numpy()[positions]
        rows = self.rows.reindex(ids)
        if rows.notna().all():
            return to_float(read_rows(self.cache.images, rows.to_numpy(np.int64))).numpy()
        if "file_loc" not in self.table:
            return None
        pixels, reasons = decode_files(self.table["file_loc"].to_numpy()[positions].tolist(), self.data_config)
        return None if any(reasons) else to_float(pixels).numpy()
