"""The catalogue's file formats: a Parquet folder of parts (the default, for any scale), or one
FITS or CSV file assembled from the parts; the format of --out, and reading any of them back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from astrovader.data.catalogue import has_suffix
from astrovader.errors import AstroVaDErError

FORMATS = {"parquet": (), "fits": (".fits", ".fit"), "csv": (".csv",)}
PARQUET_FILES = (".parquet", ".pq")  # read_predictions also reads a single Parquet file


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


def assemble(parts: list[Path], path: Path, output_format: str, schema: pa.Schema) -> None:
    if output_format == "csv":  # streamed, one part at a time
        with pacsv.CSVWriter(str(path), schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part))
        return
    from astropy.table import Table

    frame = to_pandas(pa.concat_tables([pq.read_table(part) for part in parts]))
    Table.from_pandas(frame).write(str(path), format="fits", overwrite=True)  # over its empty temporary file


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as a DataFrame; integer columns with missing values become pandas' nullable
    Int64 (Arrow would make them floats)."""
    frame = table.to_pandas()
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_integer(column.type) and column.null_count:
            frame[name] = column.to_pandas(types_mapper=lambda _: pd.Int64Dtype())
    return frame
