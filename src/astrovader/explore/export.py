"""The catalogue joined with the annotations: every row and column of the predictions, plus
`component_name` (from the component's annotation), `flag` and `note` (the object's), written
atomically into RUN/explore/ as Parquet, FITS or CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from astrovader.atomic import write_with
from astrovader.errors import InputError
from astrovader.explore.annotations import Annotations

FORMATS = {"parquet": ".parquet", "fits": ".fits", "csv": ".csv"}
ADDED = ("component_name", "flag", "note")
EXPORT_NAME = "catalogue-annotated"


def annotated(frame: pd.DataFrame, annotations: Annotations) -> pd.DataFrame:
    clashing = [name for name in ADDED if name in frame]
    if clashing:
        raise InputError(f"the catalogue already has column(s) {', '.join(clashing)}: rename them to export annotations")
    ids = frame["id_str"].astype(str)
    return frame.assign(
        component_name=frame["component"].map(annotations.names()).fillna("").astype(str),
        flag=ids.map(annotations.flags()).fillna("").astype(str),
        note=ids.map(annotations.notes()).fillna("").astype(str),
    )


def export_name(output_format: str) -> str:
    if output_format not in FORMATS:
        raise InputError(f"format {output_format!r}: choose {', '.join(FORMATS)}")
    return f"{EXPORT_NAME}{FORMATS[output_format]}"


def export_catalogue(frame: pd.DataFrame, annotations: Annotations, folder: Path, output_format: str) -> Path:
    path = Path(folder) / export_name(output_format)
    table = annotated(frame, annotations)
    return write_with(path, lambda temporary: _write(table, temporary, output_format))


def _write(table: pd.DataFrame, path: Path, output_format: str) -> None:
    if output_format == "parquet":
        table.to_parquet(path, index=False)
    elif output_format == "csv":
        table.to_csv(path, index=False)
    else:
        from astropy.table import Table

        Table.from_pandas(table).write(str(path), format="fits", overwrite=True)  # over the empty temporary file
