"""Files of generated images, streamed chunk by chunk and renamed into place at the end: the
synthetic images (.npy or FITS) with their table (Parquet or CSV), and the arrays behind a figure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from astrovader.atomic import atomic_path, write_with
from astrovader.data import fits
from astrovader.generate.figures import samples_png
from astrovader.generate.latents import DEFAULT_CHUNK, component_subset, iter_samples, require
from astrovader.model.vade import VaDE

GRID_IMAGES = 36  # synthetic images shown per component (a 6 x 6 grid)


def write_samples(model: VaDE, out: str | Path, n: int, components: int | Sequence[int] | None = None,
                  seed: int = 0, variance_scale: float = 1.0, image_format: str = "npy",
                  table_format: str = "parquet", chunk: int = DEFAULT_CHUNK,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Stream n synthetic images to out/samples.{npy,fits} and their (index, component, z_..)
    to out/samples.{parquet,csv}, each written chunk by chunk and renamed into place at the end;
    then one PNG grid per component drawn (samples_component_CC.png). Returns a summary.

    The files are written by one writer thread while the model decodes the next chunk (numpy,
    Arrow and the disk release the GIL): the stream keeps up with the model alone."""
    require(n >= 1, f"n = {n}: must be >= 1")
    require(image_format in ("npy", "fits"), f"image format {image_format!r}: choose npy or fits")
    require(table_format in ("parquet", "csv"), f"table format {table_format!r}: choose parquet or csv")
    subset = component_subset(model, components)
    out = Path(out)
    settings = {"n": n, "components": subset, "seed": seed, "variance_scale": variance_scale}
    shown: dict[int, list[np.ndarray]] = {}
    counts = np.zeros(model.prior.n_components, np.int64)
    done = 0
    with ExitStack() as stack:
        write_images = _image_writer(stack, out / f"samples.{image_format}", (n, *model.config.data.input_shape), settings)
        write_table = _table_writer(stack, out / f"samples.{table_format}")
        writer = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="astrovader-writer"))
        pending: Future | None = None
        for chosen, z, images in iter_samples(model, n, subset, seed, variance_scale, chunk):
            if pending is not None:
                pending.result()  # one chunk in flight at most: memory stays one chunk, errors surface
            pending = writer.submit(_write_chunk, write_images, write_table, done, chosen, z, images)
            counts += np.bincount(chosen, minlength=len(counts))
            for component in np.unique(chosen):
                kept = shown.setdefault(int(component), [])
                kept.extend(images[chosen == component][: GRID_IMAGES - len(kept)])
            done += len(images)
            if progress is not None:
                progress(done, n)
        if pending is not None:
            pending.result()
    grids = {}
    for component, images in sorted(shown.items()):
        grids[component] = f"samples_component_{component:02d}.png"
        samples_png(np.stack(images), f"component {component}: synthetic galaxies", out / grids[component])
    return {
        **settings, "images": f"samples.{image_format}", "table": f"samples.{table_format}",
        "grids": grids, "per_component": counts.tolist(), "precision": model.precision,
    }


def _write_chunk(write_images, write_table, start: int, chosen: np.ndarray, z: np.ndarray, images: np.ndarray) -> None:
    write_images(start, images)
    write_table(start, chosen, z)


def _image_writer(stack: ExitStack, path: Path, shape: tuple[int, ...], settings: dict):
    temporary = stack.enter_context(atomic_path(path))
    if path.suffix == ".npy":
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        stack.callback(array.flush)

        def write(start: int, images: np.ndarray) -> None:
            array[start : start + len(images)] = images

        return write
    write_images, close = fits.image_stream(temporary, shape, [
        ("ORIGIN", "astrovader"), ("SEED", settings["seed"], "random seed"),
        ("VARSCALE", settings["variance_scale"], "prior variance scale"),
        ("COMMENT", "synthetic galaxies; component and z per image in the samples table"),
    ])
    stack.callback(close)
    return lambda start, images: write_images(images)


def _table_writer(stack: ExitStack, path: Path):
    import pandas as pd

    temporary = stack.enter_context(atomic_path(path))
    state: dict = {}

    def frame(start: int, components: np.ndarray, z: np.ndarray) -> pd.DataFrame:
        width = max(2, len(str(z.shape[1] - 1)))
        columns = {"index": np.arange(start, start + len(z), dtype=np.int64), "component": components}
        columns.update({f"z_{j:0{width}d}": z[:, j] for j in range(z.shape[1])})
        return pd.DataFrame(columns)

    if path.suffix == ".csv":
        handle = stack.enter_context(open(temporary, "w", newline=""))

        def write(start: int, components: np.ndarray, z: np.ndarray) -> None:
            frame(start, components, z).to_csv(handle, header=start == 0, index=False)

        return write
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(start: int, components: np.ndarray, z: np.ndarray) -> None:
        table = pa.Table.from_pandas(frame(start, components, z), preserve_index=False)
        if "writer" not in state:
            state["writer"] = pq.ParquetWriter(str(temporary), table.schema)
            stack.callback(state["writer"].close)
        state["writer"].write_table(table)

    return write


def save_arrays(path: Path, **arrays: np.ndarray) -> Path:
    """An .npz written atomically (through a handle: np.savez would rename a bare path)."""
    def writer(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    return write_with(Path(path), writer)
