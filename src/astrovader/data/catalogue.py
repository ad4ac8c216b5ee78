"""Catalogues of inputs: a table (CSV, Parquet, FITS) with an id and a file column, a bare
folder of images, or IDX files (MNIST / Fashion-MNIST).

Whatever the source, the result is one pandas DataFrame with the columns `id_str` and
`file_loc` (an absolute path, optionally with a `#index` suffix for one image of a stacked
file) plus every other column of the source (labels, votes), which later steps carry along.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from astrovader.config import DataConfig
from astrovader.errors import AstroVaDErError, InputError

# Known classes, where a catalogue has them: names first, then integer codes.
LABEL_COLUMNS = ("label_name", "gz1_class_name", "label", "gz1_class")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".fits", ".fit", ".fits.gz", ".fit.gz", ".npy")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".fits", ".fit", ".fits.gz")


def has_suffix(path: Path | str, suffixes: tuple[str, ...]) -> bool:
    name = str(path).lower()
    return any(name.endswith(suffix) for suffix in suffixes)


def read_catalogue(source: str | Path, config: DataConfig | None = None) -> pd.DataFrame:
    """Read any supported input and return the normalised catalogue (see module docstring)."""
    config = config or DataConfig()
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if source.is_dir():
        from astrovader.data.idx import find_idx_pair

        if find_idx_pair(source) is not None:
            table = idx_catalogue(source)
        else:
            table = folder_catalogue(source)
    elif is_idx_file(source):
        table = idx_catalogue(source)
    else:
        table = table_catalogue(source, config)
    table = apply_selection(table, config.where, source)
    if table.empty:
        raise InputError(f"{source}: no inputs to read (empty catalogue or folder, or the selection kept none)")
    return table.reset_index(drop=True)


def table_catalogue(path: Path, config: DataConfig) -> pd.DataFrame:
    table = read_table(path, id_column=config.id_column)
    for column in (config.id_column, config.file_column):
        if column not in table.columns:
            raise InputError(
                f"{path}: no column {column!r} (columns: {', '.join(map(str, table.columns[:12]))}); "
                f"set data.id_column / data.file_column"
            )
    table = table.rename(columns={config.id_column: "id_str", config.file_column: "file_loc"})
    table["id_str"] = table["id_str"].map(id_text)
    table["file_loc"] = [_resolve(path.parent, value) for value in table["file_loc"]]
    return _id_and_file_first(table)


def read_table(path: Path, id_column: str = "id_str") -> pd.DataFrame:
    """CSV, Parquet or a FITS binary table, as a DataFrame. The id column of a CSV is read as
    text: 18-digit SDSS object ids would lose digits as floats."""
    name = path.name.lower()
    try:
        if name.endswith(".csv"):
            return pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if has_suffix(name, (".fits", ".fit", ".fits.gz")):
            from astropy.table import Table

            table = Table.read(path)
            # Multidimensional columns cannot live in a flat DataFrame; keep the scalar ones.
            scalar = [name for name in table.colnames if len(table[name].shape) <= 1]
            return table[scalar].to_pandas()
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(f"{path}: cannot read the catalogue ({error.__class__.__name__}: {error})") from None
    raise InputError(f"{path}: unsupported catalogue format (use CSV, Parquet or a FITS table)")


def folder_catalogue(folder: Path) -> pd.DataFrame:
    """A bare folder of images: one row per image file, id = file stem."""
    files = sorted(
        path for path in folder.rglob("*") if path.is_file() and has_suffix(path, IMAGE_SUFFIXES)
    )
    ids = [_stem(path) for path in files]
    return pd.DataFrame({"id_str": ids, "file_loc": [str(path.resolve()) for path in files]})


def is_idx_file(path: Path) -> bool:
    return "idx" in path.name.lower() and "ubyte" in path.name.lower()


def idx_catalogue(source: Path) -> pd.DataFrame:
    """IDX images (and labels when found beside them): one row per image, `file#index`."""
    from astrovader.data.idx import find_idx_pair, read_idx

    if source.is_dir():
        images_path, labels_path = find_idx_pair(source)
    else:
        images_path, labels_path = source, None
    count = read_idx(images_path, header_only=True)[0]
    stem = _stem(images_path)
    table = pd.DataFrame(
        {
            "id_str": [f"{stem}:{index}" for index in range(count)],
            "file_loc": [f"{images_path.resolve()}#{index}" for index in range(count)],
        }
    )
    if labels_path is not None:
        labels = read_idx(labels_path)
        if len(labels) != count:
            raise InputError(f"{labels_path}: {len(labels)} labels for {count} images in {images_path}")
        table["label"] = labels.astype(np.int64)
    return table


def apply_selection(table: pd.DataFrame, where: str | None, source: Path) -> pd.DataFrame:
    if not where:
        return table
    try:
        return table.query(where, engine="python")
    except Exception as error:  # noqa: BLE001 - a bad expression is a user input error
        raise InputError(f"{source}: selection {where!r} failed ({error.__class__.__name__}: {error})") from None


def _resolve(base: Path, value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    if not text:
        return ""
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def id_text(value: object) -> str:
    """An id as clean text, whatever type the table reader gave it."""
    # Integer ids read as floats (from FITS or NaN-bearing CSV columns) lose their ".0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode().strip()
    return str(value).strip()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".fits", ".fit"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return Path(name).stem if "." in name else name


def _id_and_file_first(table: pd.DataFrame) -> pd.DataFrame:
    rest = [column for column in table.columns if column not in ("id_str", "file_loc")]
    return table[["id_str", "file_loc", *rest]]


def label_column(table: pd.DataFrame, requested: str | None = None) -> str | None:
    """The column of known classes: `requested` (checked), else the first of LABEL_COLUMNS that
    holds any value; None when there is none."""
    if requested is not None:
        if requested not in table.columns:
            raise AstroVaDErError(f"--labels {requested!r}: no such column (columns: {', '.join(map(str, table.columns))})")
        return requested
    return next((name for name in LABEL_COLUMNS if name in table.columns and table[name].notna().any()), None)
