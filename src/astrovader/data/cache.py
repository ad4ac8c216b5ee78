"""`astrovader prepare`: decode every image once into a memory-mapped uint8 cache.

Layout of a cache folder:
    images.npy      uint8 (rows, bands, size, size), memory-mapped; one row per unique input
    status.npy      int8 per row: 0 pending, 1 accepted, 2 rejected (progress, for resume)
    reasons.jsonl   reject reasons appended chunk by chunk
    index.parquet   accepted rows: id_str, file_loc, row, split, and the catalogue's columns
    rejects.csv     id_str, file_loc, reason (duplicates, missing, corrupt, ...)
    cache.json      the data settings, an input fingerprint, counts, `complete`

Nothing is silently dropped: inputs = accepted + rejected, always. Re-running on the same
inputs and settings is a no-op; an interrupted run resumes from `status.npy`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from astrovader.atomic import read_json, write_json_atomic, write_with
from astrovader.config import DataConfig
from astrovader.data.catalogue import read_catalogue
from astrovader.data.images import preprocess, read_image
from astrovader.errors import ImageError, InputError
from astrovader.hardware import spawn_map

CACHE_VERSION = 1
CHUNK = 256
PENDING, ACCEPTED, REJECTED = 0, 1, 2
# Settings that change the cached pixels or the split; anything else may differ freely.
_PIXEL_SETTINGS = (
    "crop_fraction", "crop_pixels", "color", "image_size", "resize_filter", "scaling",
    "fixed_max", "asinh_softening", "sky_level", "orientation", "neighbours", "nonfinite", "id_column", "file_column", "where",
)
_SPLIT_SETTINGS = ("train_fraction", "split_round_to", "validation_size", "validation_fraction", "split_seed")


@dataclass
class PrepareSummary:
    inputs: int
    accepted: int
    rejected: int
    decoded_now: int
    seconds: float
    cache: Path

    def line(self) -> str:
        return (
            f"{self.inputs} inputs = {self.accepted} accepted + {self.rejected} rejected "
            f"({self.decoded_now} decoded in {self.seconds:.1f} s) -> {self.cache}"
        )


def prepare(
    source: str | Path,
    out: str | Path,
    config: DataConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareSummary:
    """Build (or resume, or confirm) the cache of `source` in folder `out`."""
    import time

    started = time.perf_counter()
    config = config or DataConfig()
    out = Path(out)
    catalogue = read_catalogue(source, config)
    fingerprint = input_fingerprint(catalogue, config)
    unique, duplicates = split_duplicates(catalogue)
    shape = (len(unique), *config.input_shape)

    meta_path = out / "cache.json"
    meta = read_json(meta_path) if meta_path.exists() else None
    if meta is not None and meta.get("fingerprint") != fingerprint:
        raise InputError(
            f"{out}: this cache was made from other inputs or settings; use another --out or delete it"
        )
    if meta is None:
        out.mkdir(parents=True, exist_ok=True)
        np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=shape).flush()
        np.save(out / "status.npy", np.zeros(len(unique), dtype=np.int8))
        (out / "reasons.jsonl").write_text("")
        meta = {"version": CACHE_VERSION, "fingerprint": fingerprint, "complete": False, "source": str(source)}
        meta["data"] = config.model_dump(mode="json")
        write_json_atomic(meta_path, meta)

    status = np.load(out / "status.npy")
    pending = np.flatnonzero(status == PENDING)
    decoded_now = len(pending)
    if len(pending):
        _decode_pending(unique, pending, out, status, config, progress)
    elif progress is not None:
        progress(len(unique), len(unique))

    index, rejects = _tables(unique, duplicates, out, status, config)
    if not meta.get("complete"):
        write_with(out / "index.parquet", lambda path: index.to_parquet(path, index=False))
        write_with(out / "rejects.csv", lambda path: rejects.to_csv(path, index=False))
        meta.update(
            complete=True, inputs=len(catalogue), accepted=len(index), rejected=len(rejects),
            shape=list(shape), splits=index["split"].value_counts().to_dict(), geometry=input_geometry(index),
        )
        write_json_atomic(meta_path, meta)
    return PrepareSummary(
        len(catalogue), len(index), len(rejects), decoded_now, time.perf_counter() - started, out
    )


def _decode_pending(unique, pending, out, status, config, progress) -> None:
    images = np.load(out / "images.npy", mmap_mode="r+")
    chunks = [pending[start : start + CHUNK] for start in range(0, len(pending), CHUNK)]
    files = unique["file_loc"].tolist()
    jobs = [([files[row] for row in rows], config) for rows in chunks]
    done = int((status != PENDING).sum())
    workers = min(config.workers, len(chunks))
    results = spawn_map(_decode_job, jobs, workers)
    for rows, (pixels, reasons) in zip(chunks, results):
        accepted = [row for row, reason in zip(rows, reasons) if reason is None]
        if accepted:
            images[accepted] = pixels[[i for i, reason in enumerate(reasons) if reason is None]]
            images.flush()
        with open(out / "reasons.jsonl", "a") as log:
            for row, reason in zip(rows, reasons):
                if reason is not None:
                    log.write(json.dumps({"row": int(row), "reason": reason}) + "\n")
            log.flush()
            os.fsync(log.fileno())
        status[rows] = [ACCEPTED if reason is None else REJECTED for reason in reasons]
        write_with(out / "status.npy", lambda path: _save_npy(path, status))
        done += len(rows)
        if progress is not None:
            progress(done, len(status))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to a bare name
        np.save(handle, array, allow_pickle=False)


def _decode_job(job):
    return decode_files(*job)


def decode_files(files: list[str], config: DataConfig) -> tuple[np.ndarray, list[str | None]]:
    """(uint8 pixels, reject reason or None) for each file; a bad file never raises."""
    pixels = np.zeros((len(files), *config.input_shape), dtype=np.uint8)
    reasons: list[str | None] = []
    for i, file_loc in enumerate(files):
        try:
            pixels[i] = preprocess(read_image(file_loc), config)
            reasons.append(None)
        except ImageError as error:
            reasons.append(str(error))
        except Exception as error:  # noqa: BLE001 - one bad file must never stop the run
            reasons.append(f"unexpected error ({error.__class__.__name__}: {error})")
    return pixels, reasons


GEOMETRY_SAMPLE = 64  # files read to measure the inputs' geometry


def input_geometry(table: pd.DataFrame) -> dict:
    """The inputs as the survey delivered them, from up to GEOMETRY_SAMPLE files spread over
    the table: the median side in pixels and, when the catalogue has a `pixscale` column (as
    `astrovader cutouts` writes), the median arcsec per pixel and the field across."""
    files = table["file_loc"].tolist() if "file_loc" in table else []
    sides = []
    for file_loc in files[:: max(1, len(files) // GEOMETRY_SAMPLE)][:GEOMETRY_SAMPLE]:
        try:
            sides.append(min(read_image(file_loc).shape[-2:]))
        except ImageError:
            continue
    side = float(np.median(sides)) if sides else None
    pixscale = float(pd.to_numeric(table["pixscale"], errors="coerce").median()) if "pixscale" in table else math.nan
    pixscale = None if math.isnan(pixscale) else pixscale
    field = side * pixscale if side is not None and pixscale is not None else None
    return {"side_px": side, "pixscale_arcsec": pixscale, "field_arcsec": field}


def split_duplicates(catalogue: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows to decode, rejected rows): an id's first occurrence is kept; repeated and empty ids
    are rejected with id_str, file_loc and a reason."""
    repeated = catalogue["id_str"].duplicated(keep="first")
    blank = catalogue["id_str"].eq("")
    bad = repeated | blank
    rejects = catalogue.loc[bad, ["id_str", "file_loc"]].copy()
    rejects["reason"] = np.where(blank[bad], "empty id", "duplicate id (first occurrence kept)")
    return catalogue.loc[~bad].reset_index(drop=True), rejects


def _tables(unique, duplicates, out, status, config):
    reasons: dict[int, str] = {}
    for line in (out / "reasons.jsonl").read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; its chunk was redone and logged again
        reasons[int(entry["row"])] = entry["reason"]
    rejected_rows = np.flatnonzero(status == REJECTED)
    rejects = unique.loc[rejected_rows, ["id_str", "file_loc"]].copy()
    rejects["reason"] = [reasons.get(int(row), "rejected (reason lost)") for row in rejected_rows]
    rejects = pd.concat([rejects, duplicates], ignore_index=True)

    accepted_rows = np.flatnonzero(status == ACCEPTED)
    index = unique.loc[accepted_rows].copy()
    index.insert(2, "row", accepted_rows.astype(np.int64))
    index.insert(3, "split", assign_splits(len(index), config))
    return index.reset_index(drop=True), rejects


def split_sizes(n: int, config: DataConfig) -> tuple[int, int, int]:
    """(train, validation, test): ~80 % train rounded down to whole batches, 5,000 validation
    or 5 % when that is smaller, the rest test (paper section 2)."""
    validation = min(config.validation_size, int(round(config.validation_fraction * n)))
    train = int(math.floor(config.train_fraction * n / config.split_round_to)) * config.split_round_to
    if train == 0 and n > 0:
        train = min(n, config.split_round_to)  # tiny sets: still train on something
    validation = min(validation, n - train)
    return train, validation, n - train - validation


def assign_splits(n: int, config: DataConfig) -> np.ndarray:
    """Seeded, deterministic split labels for `n` accepted rows in catalogue order."""
    train, validation, _ = split_sizes(n, config)
    order = np.random.default_rng(config.split_seed).permutation(n)
    labels = np.empty(n, dtype=object)
    labels[order[:train]] = "train"
    labels[order[train : train + validation]] = "validation"
    labels[order[train + validation :]] = "test"
    return labels


def input_fingerprint(catalogue: pd.DataFrame, config: DataConfig) -> str:
    """What the cached pixels and splits depend on: the inputs (ids and files, in order) and the
    pixel and split settings, hashed. Settings such as `workers` leave it unchanged."""
    digest = hashlib.sha256()
    settings = {key: getattr(config, key) for key in _PIXEL_SETTINGS + _SPLIT_SETTINGS}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(pd.util.hash_pandas_object(catalogue[["id_str", "file_loc"]], index=False).values.tobytes())
    return digest.hexdigest()[:32]


class Cache:
    """A prepared cache, opened read-only: pixels as a memory map, the index as a DataFrame."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / "cache.json"
        if not meta_path.exists():
            raise InputError(f"{self.folder}: not a prepared cache (no cache.json); run `astrovader prepare`")
        self.meta = read_json(meta_path)
        if not self.meta.get("complete"):
            raise InputError(f"{self.folder}: cache is incomplete; re-run `astrovader prepare` to resume it")
        self.data_config = DataConfig.model_validate(self.meta["data"])

    @cached_property
    def geometry(self) -> dict:
        """`input_geometry` of the cached inputs (measured now for caches made before it was kept)."""
        return self.meta.get("geometry") or input_geometry(self.index)

    @staticmethod
    def is_cache(folder: str | Path) -> bool:
        return (Path(folder) / "cache.json").exists()

    @cached_property
    def images(self) -> np.ndarray:
        return np.load(self.folder / "images.npy", mmap_mode="r")

    @cached_property
    def index(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder / "index.parquet")

    @cached_property
    def rejects(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "rejects.csv", dtype=str, keep_default_na=False)

    def split(self, name: str | None) -> pd.DataFrame:
        """Index rows of one split ('train', 'validation', 'test') or all of them (None / 'all')."""
        if name in (None, "all"):
            return self.index
        if name not in ("train", "validation", "test"):
            raise InputError(f"unknown split {name!r} (train, validation, test or all)")
        return self.index[self.index["split"] == name]

    def check_matches(self, wanted: DataConfig) -> None:
        """Refuse a cache whose pixels are not what a model with data settings `wanted` takes."""
        held = self.data_config
        if (held.image_size, held.color) != (wanted.image_size, wanted.color):
            raise InputError(
                f"{self.folder}: holds {held.image_size} px {held.color} images but the config wants "
                f"{wanted.image_size} px {wanted.color}; prepare again with the same settings"
            )

    @property
    def label_names(self) -> list[str] | None:
        """Class names in the order of the `label` column's values, when the catalogue had both."""
        index = self.index
        if "label_name" not in index or "label" not in index:
            return None
        pairs = index[["label", "label_name"]].drop_duplicates().sort_values("label")
        return [str(name) for name in pairs["label_name"]]
