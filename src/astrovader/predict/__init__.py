"""The cluster catalogue of a whole survey, streamed, resumable and sharded over torchrun ranks,
from the per-sample, batch-independent outputs of `model.inference.model_outputs`.

`predict_catalogue` writes one row per input (columns: `parts.output_schema`), in input order,
as Parquet part files of `part_size` rows: a folder

    part-000000.parquet ...   rows [p * part_size, (p + 1) * part_size) of the inputs
    _manifest.json            model, data, fingerprint, parts, `complete` (the leading "_" makes
                              Parquet engines such as pyarrow, Spark and DuckDB skip it)

Each part is written atomically and is the unit of resume: a re-run after a kill redoes only
the missing parts. Under torchrun each rank predicts its share of the missing parts, and rank 0
writes the manifest once every part exists. FITS and CSV outputs are assembled into one file
from the same parts (kept in `OUT.parts/` until then); FITS is assembled in memory, so use
Parquet at survey scale. `read_predictions` reads any of the three back as one DataFrame.

    inputs.py     what is predicted: a prepared cache or a catalogue / image folder, one row each
    parts.py      the part files and their manifest: the columns, one part's table, resume
    formats.py    Parquet, FITS or CSV: the format of --out, assembling one file, reading back
    ranks.py      this process among the torch.distributed ranks
    catalogue.py  `predict_catalogue` and `read_predictions`, which tie the above together
"""

from astrovader.predict.catalogue import predict_catalogue, read_predictions

__all__ = ["predict_catalogue", "read_predictions"]
