"""The cluster catalogue of a whole survey, streamed, resumable and sharded over torchrun ranks,
from the per-sample, batch-independent outputs of `model.inference.model_outputs`.

`predict_catalogue` writes one row per input (columns: `output_schema`), in input order, as
Parquet part files of `part_size` rows: a folder

    part-000000.parquet ...   rows [p * part_size, (p + 1) * part_size) of the inputs
    _manifest.json            model, data, fingerprint, parts, `complete` (the leading "_" makes
                              Parquet engines such as pyarrow, Spark and DuckDB skip it)

Each part is written atomically and is the unit of resume: a re-run after a kill redoes only
the missing parts. Under torchrun each rank predicts its share of the missing parts, and rank 0
writes the manifest once every part exists. FITS and CSV outputs are assembled into one file
from the same parts (kept in `OUT.parts/` until then); FITS is assembled in memory, so use
Parquet at survey scale. `read_predictions` reads any of the three back as one DataFrame.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from astrovader.analysis import shift
from astrovader.config import Config, DataConfig
from astrovader.data.cache import Cache, decode_files, input_fingerprint, input_geometry, split_duplicates
from astrovader.data.catalogue import has_suffix, read_catalogue
from astrovader.data.loader import read_rows
from astrovader.errors import AstroVaDErError, InputError
from astrovader.io import read_json, write_json_atomic, write_with
from astrovader.model.inference import model_outputs
from astrovader.model.io import WEIGHTS, load_model
from astrovader.model.vade import VaDE
from astrovader.runtime import choose_precision, runtime_info

# -- the cluster catalogue ------------------------------------------------------------------

PART_SIZE = 65_536
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "astrovader-predictions/2"  # 2: the shift columns
FORMATS = {"parquet": (), "fits": (".fits", ".fit"), "csv": (".csv",)}
PARQUET_FILES = (".parquet", ".pq")  # read_predictions also reads a single Parquet file
# Rank 0 may assemble a FITS/CSV file while the others wait for it.
GROUP_TIMEOUT = timedelta(hours=12)


@dataclass
class PredictSummary:
    inputs: int
    errors: int
    computed: int
    seconds: float
    out: Path
    rank: int = 0
    shift: dict | None = None  # analysis.shift.shift_report of the inputs

    def line(self) -> str:
        line = (
            f"{self.inputs} inputs = {self.inputs - self.errors} predicted + {self.errors} with an error "
            f"({self.computed} computed now in {self.seconds:.1f} s) -> {self.out}"
        )
        shift = self.shift or {}
        if shift.get("flagged") is not None:
            line += f"; {shift['flagged']:.1%} flagged as unlike the training data (column ood)"
        if shift.get("warning"):
            line += f"\nwarning: {shift['warning']}"
        return line


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


def predict_catalogue(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    batch_size: int = 256,
    output_format: str | None = None,
    workers: int = 2,
    part_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PredictSummary:
    """Write the cluster catalogue of `data` (a prepared cache, a catalogue or an image folder,
    the latter two decoded with the model's own data settings) under the model of `run_dir`.

    One row per input (see `output_schema`); an input that cannot be read is a row with a
    reason in `error`. Resumes an interrupted run in the same `out`; under torchrun (or any
    initialised torch.distributed group) the ranks share the parts. `output_format` is
    parquet, fits or csv (by default from the suffix of `out`, else parquet); `workers` reader
    processes (0: read in this process); `part_size` rows per part (default PART_SIZE), the unit
    of resume; `progress(done, total)` counts this rank's rows.
    """
    started = time.perf_counter()
    out = Path(out)
    output_format = format_of(out, output_format)
    part_size = PART_SIZE if part_size is None else part_size
    for name, value, least in (("batch_size", batch_size, 1), ("part_size", part_size, 1), ("workers", workers, 0)):
        if not isinstance(value, int) or value < least:
            raise AstroVaDErError(f"predict: {name} = {value!r}: must be an integer >= {least}")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    model, metadata = load_model(run_dir)
    precision = choose_precision(model.config.train.precision, device.type)
    model.to(device).set_precision(precision)
    inputs = read_inputs(data, model.config)
    schema = output_schema(model.prior.n_components, model.prior.means.shape[1], inputs)
    manifest = {
        "format": MANIFEST_FORMAT, "model": str(Path(run_dir).resolve()), "data": inputs.description,
        "rows": len(inputs.table), "part_size": part_size, "precision": precision, "columns": schema.names,
        # What makes the parts: a resumed run must share it (batch size and workers never matter).
        "fingerprint": _digest(
            MANIFEST_FORMAT, _file_sha256(Path(run_dir) / WEIGHTS), inputs.fingerprint, part_size, precision
        ),
    }
    folder = out if output_format == "parquet" else out.with_name(out.name + ".parts")
    ranks = Ranks()
    try:
        finished = check_output(out, folder, output_format, manifest["fingerprint"])
        if finished is not None:
            seconds = time.perf_counter() - started
            return PredictSummary(finished["rows"], finished["errors"], 0, seconds, out, ranks.rank, finished.get("shift"))
        n_parts = -(-len(inputs.table) // part_size)
        ranks.barrier()  # every rank has checked `out` before rank 0 changes it
        pending = ranks.from_rank_0(lambda: _begin(folder, manifest, n_parts))
        reference = metadata.get("training_reference")
        computed = _predict_parts(
            model, inputs, pending[ranks.rank :: ranks.size], folder, schema, batch_size, part_size, workers, progress,
            reference,
        )
        computed_by_rank = ranks.gather(computed)
        manifest.update(runtime=runtime_info(precision), computed_by_rank=computed_by_rank)
        final = ranks.from_rank_0(lambda: _finish(folder, out, output_format, manifest, n_parts, schema, reference,
                                                  (metadata.get("training_inputs"), inputs.geometry())))
    finally:
        ranks.close()
    seconds = time.perf_counter() - started
    return PredictSummary(final["rows"], final["errors"], sum(computed_by_rank), seconds, out, ranks.rank, final["shift"])


def format_of(out: Path, requested: str | None) -> str:
    """The output format: as requested (checked against the suffix of `out`), else from it."""
    implied = next((name for name, suffixes in FORMATS.items() if suffixes and has_suffix(out, suffixes)), None)
    if requested is None:
        return implied or "parquet"
    if requested not in FORMATS:
        raise AstroVaDErError(f"predict: format = {requested!r}: choose {', '.join(FORMATS)}")
    if implied not in (None, requested):
        raise AstroVaDErError(f"predict: --out {out} looks like {implied} but format = {requested!r}")
    return requested


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
    expected = (settings.bands, settings.image_size, settings.image_size)
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


def output_schema(n_components: int, latent_dim: int, inputs: Inputs) -> pa.Schema:
    """The catalogue's columns: id_str; split (train / validation / test from a cache, else
    empty); component (argmax gamma, -1 for an input that could not be read); gamma_max;
    gamma_00.. (eq. 17-scaled, softmaxed); posterior_00.. (unscaled Bayes p(c | mu_z));
    mu_00..; logvar_00..; log_likelihood (log p(mu_z) under the mixture); mse (per pixel, of
    the decoded mu_z); log_likelihood_quantile and mse_quantile (where the input falls among the
    training split's, in [0, 1]; NaN for a model without a training reference); ood (True: unlike
    the training data, `analysis.shift.flag`); error ("" when fine, else the reason); then the
    input's own columns."""
    def block(name: str, count: int) -> list[pa.Field]:
        return [pa.field(f"{name}_{index:02d}", pa.float32()) for index in range(count)]

    given = inputs.table.schema
    fields = [
        given.field("id_str").with_type(pa.string()), given.field("split").with_type(pa.string()),
        pa.field("component", pa.int64()), pa.field("gamma_max", pa.float32()),
        *block("gamma", n_components), *block("posterior", n_components), *block("mu", latent_dim),
        *block("logvar", latent_dim), pa.field("log_likelihood", pa.float32()), pa.field("mse", pa.float32()),
        pa.field("log_likelihood_quantile", pa.float32()), pa.field("mse_quantile", pa.float32()),
        pa.field("ood", pa.bool_()), pa.field("error", pa.string()),
    ]
    names = {field.name for field in fields}
    carried = [field for field in given if field.name not in ("id_str", "split")]
    clash = [field.name for field in carried if field.name in names]
    if clash:
        source = inputs.description["path"]
        raise InputError(f"{source}: column {clash[0]!r} clashes with a prediction column; rename it")
    return pa.schema(fields + carried)


def check_output(out: Path, folder: Path, output_format: str, fingerprint: str) -> dict | None:
    """The manifest when `out` is a finished Parquet catalogue made the same way (nothing left
    to do); None to start or resume; an error when `out` holds anything else."""
    if output_format != "parquet" and out.exists() and not folder.exists():
        raise InputError(f"{out}: exists already; delete it or choose another --out")
    if (folder / MANIFEST).exists():
        manifest = read_json(folder / MANIFEST)
        if manifest.get("fingerprint") != fingerprint:
            raise InputError(
                f"{folder}: holds predictions of another model, data, part size or precision; "
                f"delete it or choose another --out"
            )
        return manifest if manifest["complete"] and output_format == "parquet" else None
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: exists and is not a predictions folder (no {MANIFEST}); choose another --out")
    return None


def part_name(part: int) -> str:
    return f"part-{part:06d}.parquet"


def _begin(folder: Path, manifest: dict, n_parts: int) -> list[int]:
    """Rank 0, before any rank writes: the folder, its manifest, and the parts still to do."""
    folder.mkdir(parents=True, exist_ok=True)
    for temporary in folder.glob(".*.part"):  # left by a writer that was killed
        temporary.unlink()
    if not (folder / MANIFEST).exists():
        write_json_atomic(folder / MANIFEST, {**manifest, "complete": False})
    return [part for part in range(n_parts) if not (folder / part_name(part)).exists()]


def _predict_parts(model: VaDE, inputs: Inputs, parts: list[int], folder: Path, schema: pa.Schema, batch_size: int,
                   part_size: int, workers: int, progress: Callable[[int, int], None] | None,
                   reference: dict | None) -> int:
    """Predict and write `parts`, holding one part's outputs at a time; returns rows done."""
    n = len(inputs.table)
    bounds = {part: (part * part_size, min(n, (part + 1) * part_size)) for part in parts}
    batches = [
        (part, start, min(start + batch_size, stop))
        for part, (first, stop) in bounds.items() for start in range(first, stop, batch_size)
    ]
    reader = InputBatches(inputs, batches, model.config.data)
    loader = DataLoader(reader, batch_size=None, num_workers=workers, collate_fn=_unchanged)
    total = sum(stop - start for _, start, stop in batches)
    pieces: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    done = 0
    for item in loader:
        pieces.append((item["errors"], _outputs_with_gaps(model, item["pixels"], item["errors"])))
        done += item["stop"] - item["start"]
        if item["stop"] == bounds[item["part"]][1]:
            table = _part_table(inputs, *bounds[item["part"]], pieces, schema, reference)
            write_with(folder / part_name(item["part"]), lambda path: pq.write_table(table, path))
            pieces = []
        if progress is not None:
            progress(done, total)
    return done


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


def _unchanged(item):
    return item


def _outputs_with_gaps(model: VaDE, pixels: np.ndarray, errors: np.ndarray) -> dict[str, np.ndarray]:
    """model_outputs for the readable inputs, NaN rows for the others."""
    readable = errors == ""
    filled = {}
    for name, values in model_outputs(model, pixels).items():
        filled[name] = np.full((len(errors), *values.shape[1:]), np.nan, dtype=np.float32)
        filled[name][readable] = values
    return filled


def _part_table(inputs: Inputs, start: int, stop: int, pieces, schema: pa.Schema, reference: dict | None) -> pa.Table:
    errors = np.concatenate([piece[0] for piece in pieces])
    outputs = {name: np.concatenate([piece[1][name] for piece in pieces]) for name in pieces[0][1]}
    gamma = outputs["gamma"]
    columns = {
        "component": np.where(errors == "", gamma.argmax(axis=1), -1),
        "gamma_max": gamma.max(axis=1),
        "log_likelihood": outputs["log_likelihood"],
        "mse": outputs["mse"],
        **shift.shift_columns(outputs["log_likelihood"], outputs["mse"], reference),
        "error": errors.astype(str),
    }
    for name in ("gamma", "posterior", "mu", "logvar"):
        columns.update({f"{name}_{index:02d}": values for index, values in enumerate(outputs[name].T)})
    given = inputs.table.slice(start, stop - start)
    arrays = [
        pa.array(columns[field.name], type=field.type) if field.name in columns
        else given.column(field.name).cast(field.type)
        for field in schema
    ]
    return pa.table(arrays, schema=schema)


def _finish(folder: Path, out: Path, output_format: str, manifest: dict, n_parts: int, schema: pa.Schema,
            reference: dict | None, geometries: tuple[dict | None, dict | None]) -> dict:
    """Rank 0, once every rank is done: check every part, mark the manifest complete (with the
    inputs' shift report), and assemble the FITS / CSV file when asked for one."""
    parts, errors, components, flagged = [], 0, [], []
    for part in range(n_parts):
        path = folder / part_name(part)
        if not path.exists():
            raise AstroVaDErError(f"{path}: missing after every rank finished; re-run predict to redo it")
        columns = pq.read_table(path, columns=["error", "component", "ood"])
        column = columns.column("error")
        expected = min(manifest["rows"], (part + 1) * manifest["part_size"]) - part * manifest["part_size"]
        if len(column) != expected:
            raise AstroVaDErError(f"{path}: {len(column)} rows instead of {expected}; delete it and re-run predict")
        errors += pc.sum(pc.not_equal(column, "")).as_py() or 0
        components.append(columns.column("component").to_numpy())
        flagged.append(columns.column("ood").to_numpy(zero_copy_only=False))
        parts.append({"file": path.name, "rows": len(column)})
    finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    report = shift.shift_report(np.concatenate(components or [np.zeros(0, int)]),
                                np.concatenate(flagged or [np.zeros(0, bool)]), reference, *geometries)
    final = {**manifest, "complete": True, "errors": errors, "parts": parts, "finished": finished, "shift": report}
    write_json_atomic(folder / MANIFEST, final)
    if output_format != "parquet":
        paths = [folder / part["file"] for part in parts]
        write_with(out, lambda path: _assemble(paths, path, output_format, schema))
        shutil.rmtree(folder)
    return final


def _assemble(parts: list[Path], path: Path, output_format: str, schema: pa.Schema) -> None:
    if output_format == "csv":  # streamed, one part at a time
        with pacsv.CSVWriter(str(path), schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part))
        return
    from astropy.table import Table

    frame = _to_pandas(pa.concat_tables([pq.read_table(part) for part in parts]))
    Table.from_pandas(frame).write(str(path), format="fits", overwrite=True)  # over its empty temporary file


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as a DataFrame; integer columns with missing values become pandas' nullable
    Int64 (Arrow would make them floats)."""
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_integer(column.type) and column.null_count:
            frame[name] = column.to_pandas(types_mapper=lambda _: pd.Int64Dtype())
    return frame


def read_predictions(path: str | Path) -> pd.DataFrame:
    """The whole catalogue written by `predict_catalogue` (Parquet folder, FITS or CSV), or one
    Parquet file of it (e.g. a folder's parts joined into one)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST).exists():
            raise InputError(f"{path}: not a predictions folder (no {MANIFEST})")
        manifest = read_json(path / MANIFEST)
        if not manifest.get("complete"):
            raise InputError(f"{path}: predictions are incomplete; re-run `astrovader predict` to finish them")
        return _to_pandas(pa.concat_tables([pq.read_table(path / part["file"]) for part in manifest["parts"]]))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if has_suffix(path, PARQUET_FILES):
        try:
            return _to_pandas(pq.read_table(path))
        except pa.ArrowInvalid as error:
            raise InputError(f"{path}: not a readable Parquet file ({error})") from None
    if has_suffix(path, FORMATS["fits"]):
        from astropy.table import Table

        return Table.read(path, format="fits", character_as_bytes=False).to_pandas()
    if has_suffix(path, FORMATS["csv"]):
        # Ids and reasons stay text: 18-digit SDSS ids must not become floats, "" must stay "".
        text = {name: pa.string() for name in ("id_str", "split", "error", "file_loc")}
        return _to_pandas(pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=text)))
    raise InputError(f"{path}: not a predictions folder, Parquet, FITS or CSV file")


class Ranks:
    """This process among the torch.distributed processes (torchrun sets RANK, WORLD_SIZE,
    MASTER_ADDR/PORT), or alone. Only small objects are exchanged, so gloo serves CPU and GPU
    runs alike; a group initialised by the caller is used as it is."""

    def __init__(self):
        self.started = (
            dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        )
        if self.started:
            dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.size = dist.get_world_size() if self.active else 1

    def from_rank_0(self, make: Callable[[], object]):
        """make() run on rank 0 and its result on every rank (a collective: all ranks wait)."""
        box = [make() if self.rank == 0 else None]
        if self.active:
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value) -> list:
        if not self.active:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self.started:
            dist.destroy_process_group()


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _digest(*values) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:32]
