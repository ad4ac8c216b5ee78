"""The part files of a catalogue and their manifest: the columns, predicting and writing one part
at a time, what a resumed run still has to do, and the check and completion once all exist."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from torch.utils.data import DataLoader

from astrovader.analysis import shift
from astrovader.atomic import read_json, write_json_atomic, write_with
from astrovader.errors import AstroVaDErError, InputError
from astrovader.model.inference import model_outputs
from astrovader.model.vade import VaDE
from astrovader.predict.formats import assemble
from astrovader.predict.inputs import InputBatches, Inputs

PART_SIZE = 65_536
MANIFEST = "_manifest.json"
MANIFEST_FORMAT = "astrovader-predictions/2"  # 2: the shift columns


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


def begin_parts(folder: Path, manifest: dict, n_parts: int) -> list[int]:
    """Rank 0, before any rank writes: the folder, its manifest, and the parts still to do."""
    folder.mkdir(parents=True, exist_ok=True)
    for temporary in folder.glob(".*.part"):  # left by a writer that was killed
        temporary.unlink()
    if not (folder / MANIFEST).exists():
        write_json_atomic(folder / MANIFEST, {**manifest, "complete": False})
    return [part for part in range(n_parts) if not (folder / part_name(part)).exists()]


def predict_parts(model: VaDE, inputs: Inputs, parts: list[int], folder: Path, schema: pa.Schema, batch_size: int,
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


def finish_parts(folder: Path, out: Path, output_format: str, manifest: dict, n_parts: int, schema: pa.Schema,
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
        write_with(out, lambda path: assemble(paths, path, output_format, schema))
        shutil.rmtree(folder)
    return final
