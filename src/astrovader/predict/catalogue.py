"""`predict_catalogue`: the cluster catalogue of a data set under a trained model, resumable and
shared among torchrun ranks; `read_predictions`: any catalogue it wrote, as one DataFrame."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

from astrovader.atomic import read_json
from astrovader.data.catalogue import has_suffix
from astrovader.errors import AstroVaDErError, InputError
from astrovader.model.io import WEIGHTS, load_model
from astrovader.predict.formats import FORMATS, PARQUET_FILES, format_of, to_pandas
from astrovader.predict.inputs import read_inputs
from astrovader.predict.parts import (
    MANIFEST, MANIFEST_FORMAT, PART_SIZE, begin_parts, check_output, finish_parts, output_schema, predict_parts,
)
from astrovader.hardware import choose_precision, runtime_info
from astrovader.predict.ranks import Ranks


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
        pending = ranks.from_rank_0(lambda: begin_parts(folder, manifest, n_parts))
        reference = metadata.get("training_reference")
        computed = predict_parts(
            model, inputs, pending[ranks.rank :: ranks.size], folder, schema, batch_size, part_size, workers, progress,
            reference,
        )
        computed_by_rank = ranks.gather(computed)
        manifest.update(runtime=runtime_info(precision), computed_by_rank=computed_by_rank)
        final = ranks.from_rank_0(lambda: finish_parts(
            folder, out, output_format, manifest, n_parts, schema, reference,
            (metadata.get("training_inputs"), inputs.geometry()),  # measured on rank 0 only
        ))
    finally:
        ranks.close()
    seconds = time.perf_counter() - started
    return PredictSummary(final["rows"], final["errors"], sum(computed_by_rank), seconds, out, ranks.rank, final["shift"])


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
        return to_pandas(pa.concat_tables([pq.read_table(path / part["file"]) for part in manifest["parts"]]))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if has_suffix(path, PARQUET_FILES):
        try:
            return to_pandas(pq.read_table(path))
        except pa.ArrowInvalid as error:
            raise InputError(f"{path}: not a readable Parquet file ({error})") from None
    if has_suffix(path, FORMATS["fits"]):
        from astropy.table import Table

        return Table.read(path, format="fits", character_as_bytes=False).to_pandas()
    if has_suffix(path, FORMATS["csv"]):
        # Ids and reasons stay text: 18-digit SDSS ids must not become floats, "" must stay "".
        text = {name: pa.string() for name in ("id_str", "split", "error", "file_loc")}
        return to_pandas(pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=text)))
    raise InputError(f"{path}: not a predictions folder, Parquet, FITS or CSV file")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _digest(*values) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:32]
