"""What is predicted: the inputs of a prepared cache or of a catalogue / image folder, one output
row each (unreadable ones included, with their reason), and the reader of their pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from torch.utils.data import Dataset

from astrovader.config import Config, DataConfig
from astrovader.data.cache import Cache, decode_files, input_fingerprint, input_geometry, split_duplicates
from astrovader.data.catalogue import read_catalogue
from astrovader.data.loader import read_rows
from astrovader.errors import InputError


@dataclass
class Inputs:
    """One row per input, in output order: `table` (id_str, split, the catalogue's own columns;
    Arrow, so that a part's rows are a slice, not a copy), where each input's pixels are
    (`locations`: cache rows, or files), and the reason an input is known to be unusable
    before reading it (`errors`, "" when fine)."""

    table: pa.Table
    locations: np.ndarray
    errors: np.ndarray
    cache_folder: Path | None
    fingerprint: str
    description: dict

    def geometry(self) -> dict:
        """`data.cache.input_geometry` of these inputs (the cache's record, or measured on their files)."""
        if self.cache_folder is not None:
            return Cache(self.cache_folder).geometry
        return input_geometry(self.table.select(["file_loc", *(["pixscale"] if "pixscale" in self.table.column_names else [])]).to_pandas())


def read_inputs(data: str | Path, config: Config) -> Inputs:
    """A prepared cache (its accepted rows, then its rejects), or a catalogue / image folder
    (its rows, then repeated or empty ids), as `Inputs`. The model's training selection
    (`data.where`) is not applied: every input gets a row."""
    data = Path(data)
    if Cache.is_cache(data):
        return _cache_inputs(Cache(data), config.data)
    settings = config.data.model_copy(update={"where": None})
    catalogue = read_catalogue(data, settings)
    unique, repeated = split_duplicates(catalogue)
    table = _stack(unique, repeated.drop(columns="reason"))
    table.insert(1, "split", "")
    errors = np.concatenate([np.full(len(unique), "", dtype=object), repeated["reason"].to_numpy(object)])
    description = {"kind": "catalogue", "path": str(data.resolve())}
    locations = table["file_loc"].to_numpy(object)
    return Inputs(_arrow(table), locations, errors, None, input_fingerprint(catalogue, settings), description)


def _cache_inputs(cache: Cache, settings: DataConfig) -> Inputs:
    expected = settings.input_shape
    if tuple(cache.images.shape[1:]) != expected:
        raise InputError(
            f"{cache.folder}: holds images of shape {tuple(cache.images.shape[1:])} but the model takes "
            f"{expected}; prepare the data with the model's settings (or pass the catalogue)"
        )
    index, rejects = cache.index, cache.rejects
    table = _stack(index.drop(columns="row"), rejects.drop(columns="reason").assign(split=""))
    locations = np.concatenate([index["row"].to_numpy(np.int64), np.full(len(rejects), -1, np.int64)])
    errors = np.concatenate([np.full(len(index), "", dtype=object), rejects["reason"].to_numpy(object)])
    description = {"kind": "cache", "path": str(cache.folder.resolve())}
    return Inputs(_arrow(table), locations, errors, cache.folder, cache.meta["fingerprint"], description)


def _stack(accepted: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """Accepted rows, then rejected ones. A column the rejects lack (the catalogue's own, e.g.
    labels) is missing there: integer columns become pandas' nullable Int64, not floats."""
    if not len(rejected):
        return accepted.reset_index(drop=True)
    lacking = {name: "Int64" for name, dtype in accepted.dtypes.items()
               if name not in rejected and pd.api.types.is_integer_dtype(dtype)}
    return pd.concat([accepted.astype(lacking), rejected], ignore_index=True)


def _arrow(table: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata()


class InputBatches(Dataset):
    """Item i: batch i's pixels (uint8, its readable inputs only) and every input's error reason.

    Runs in DataLoader worker processes, so it holds paths and arrays only and opens the cache's
    memory map in the process that reads it."""

    def __init__(self, inputs: Inputs, batches: list[tuple[int, int, int]], settings: DataConfig):
        self.batches, self.settings = batches, settings
        self.locations, self.errors, self.cache_folder = inputs.locations, inputs.errors, inputs.cache_folder
        self._images = None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        part, start, stop = self.batches[index]
        errors = self.errors[start:stop].copy()
        readable = np.flatnonzero(errors == "")
        locations = self.locations[start:stop][readable]
        if self.cache_folder is not None:
            if self._images is None:
                self._images = Cache(self.cache_folder).images
            pixels = read_rows(self._images, locations)
        else:
            pixels, reasons = decode_files(list(locations), self.settings)
            failed = np.array([reason is not None for reason in reasons], dtype=bool)
            errors[readable[failed]] = [reason for reason in reasons if reason is not None]
            pixels = pixels[~failed]
        return {"part": part, "start": start, "stop": stop, "pixels": pixels, "errors": errors}
