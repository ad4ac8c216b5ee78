"""`astrovader cutouts`: one survey image cutout per catalogue row, politely downloaded.

Surveys (plain HTTP GETs, base URLs replaceable for mirrors and tests):
    sdss              SDSS SkyServer ImgCutout `getjpeg` (gri colour JPEG)
    legacy[:<layer>]  Legacy Survey viewer `cutout.jpg` / `cutout.fits` (layer default ls-dr10)
    hips:<HiPS id>    CDS hips2fits, any HiPS (e.g. hips:CDS/P/SDSS9/color), JPEG or FITS

Layout of the output folder:
    images/<id>.jpg|.fits   one cutout per row (id percent-encoded into a safe file name)
    catalog.csv             id_str, file_loc (relative), ra, dec, pixscale, url, then the input's
                            other columns; read it with `astrovader prepare OUT/catalog.csv`
    failures.csv            row, id_str, url, reason for every row without a cutout

Rows = downloaded + skipped (already present and valid) + failed, always. Requests are spaced
by a global rate limit and retried with exponential back-off on timeouts, connection errors and
5xx answers, never on 4xx. Every payload is checked (decodes, expected size) before it is kept,
and written to a temporary file renamed into place, so a kill never leaves a half cutout: a
re-run fetches only what is missing.

The services and options: `surveys`; fetching and checking one cutout: `fetch`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from astrovader.atomic import write_with
from astrovader.data.catalogue import id_text, read_table
from astrovader.data.sources.fetch import CutoutError, Fetcher, check_cutout
from astrovader.data.sources.surveys import CutoutOptions
from astrovader.errors import InputError

IMAGES_FOLDER = "images"
CATALOGUE_COLUMNS = ("id_str", "file_loc", "ra", "dec", "pixscale", "url")

DOWNLOADED, SKIPPED, FAILED = "downloaded", "skipped", "failed"


def geometry_of_run(run_dir: str | Path) -> tuple[int, float]:
    """(size in px, arcsec per pixel) of the inputs a trained run was trained on, so that new
    cutouts match them (`cutouts --like RUN`)."""
    from astrovader.atomic import read_json
    from astrovader.runs import RunFolder

    path = RunFolder(run_dir).metadata_file
    if not path.exists():
        raise InputError(f"{run_dir}: no trained model ({path.name}) to take the cutout geometry from")
    geometry = read_json(path).get("training_inputs") or {}
    if geometry.get("side_px") is None or geometry.get("pixscale_arcsec") is None:
        raise InputError(
            f"{path}: records no pixel scale of its training inputs (their catalogue had no pixscale column); "
            f"give --size and --pixscale (or --scale-column) yourself"
        )
    return int(round(geometry["side_px"])), float(geometry["pixscale_arcsec"])


@dataclass
class CutoutSummary:
    requested: int
    downloaded: int
    skipped: int
    failed: int
    requests: int
    seconds: float
    out: Path

    def line(self) -> str:
        failures = f"; reasons in {self.out / 'failures.csv'}" if self.failed else ""
        return (
            f"{self.requested} requested = {self.downloaded} downloaded + {self.skipped} already present "
            f"+ {self.failed} failed ({self.requests} HTTP requests in {self.seconds:.1f} s) "
            f"-> {self.out / 'catalog.csv'}{failures}"
        )


@dataclass(frozen=True)
class _Cutout:
    row: int  # position in the input catalogue
    id_str: str
    ra: float
    dec: float
    pixscale: float
    url: str
    file_loc: str  # relative to the output folder


def download_cutouts(
    catalogue_path: str | Path,
    out_dir: str | Path,
    options: CutoutOptions,
    progress: Callable[[int, int], None] | None = None,
) -> CutoutSummary:
    """Fetch (or resume fetching) one cutout per catalogue row into `out_dir`."""
    started = time.perf_counter()
    catalogue_path, out_dir = Path(catalogue_path), Path(out_dir)
    table = read_table(catalogue_path, id_column=options.id_column)
    _require_columns(table, options, catalogue_path)
    cutouts, failures = _plan(table, options)
    images = out_dir / IMAGES_FOLDER
    images.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(images)

    counts: Counter[str] = Counter()
    kept: list[_Cutout] = []

    def record(result: tuple[_Cutout, str, str]) -> None:
        cutout, outcome, reason = result
        counts[outcome] += 1
        if outcome == FAILED:
            failures.append((cutout.row, cutout.id_str, cutout.url, reason))
        else:
            kept.append(cutout)
        _report(progress, len(kept) + len(failures), len(table))

    _report(progress, len(failures), len(table))
    with Fetcher(options) as fetcher:
        _run_bounded(lambda cutout: _obtain(cutout, out_dir, fetcher), cutouts, options.concurrency,
                     handle=record, on_abort=fetcher.stop)

    _write_catalogue(out_dir, table, kept, options)
    _write_failures(out_dir, failures)
    return CutoutSummary(
        len(table), counts[DOWNLOADED], counts[SKIPPED], len(failures), fetcher.requests,
        time.perf_counter() - started, out_dir,
    )


def _require_columns(table: pd.DataFrame, options: CutoutOptions, path: Path) -> None:
    wanted = {"id_column": options.id_column, "ra_column": options.ra_column, "dec_column": options.dec_column}
    if options.scale_column is not None:
        wanted["scale_column"] = options.scale_column
    for option, column in wanted.items():
        if column not in table.columns:
            columns = ", ".join(map(str, table.columns[:12]))
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{path}: no column {column!r} (columns: {columns}); set {option} ({flag})")


def _plan(table: pd.DataFrame, options: CutoutOptions) -> tuple[list[_Cutout], list[tuple[int, str, str, str]]]:
    """Every row becomes a cutout to obtain or a failure (row, id, url, reason)."""
    cutouts: list[_Cutout] = []
    failures: list[tuple[int, str, str, str]] = []
    seen: set[str] = set()
    sizes = table[options.scale_column] if options.scale_column else [None] * len(table)
    rows = zip(table[options.id_column], table[options.ra_column], table[options.dec_column], sizes, strict=True)
    for row, (raw_id, raw_ra, raw_dec, raw_size) in enumerate(rows):
        id_str = "" if pd.isna(raw_id) else id_text(raw_id)
        try:
            cutouts.append(_plan_row(row, id_str, raw_ra, raw_dec, raw_size, options, seen))
        except CutoutError as error:
            failures.append((row, id_str, "", str(error)))
        seen.add(id_str)
    return cutouts, failures


def _plan_row(row: int, id_str: str, raw_ra: Any, raw_dec: Any, raw_size: Any, options: CutoutOptions,
              seen: set[str]) -> _Cutout:
    if not id_str:
        raise CutoutError("empty id")
    if id_str in seen:
        raise CutoutError("duplicate id (only its first row is used)")
    ra = _number(raw_ra, options.ra_column, 0.0, 360.0)
    dec = _number(raw_dec, options.dec_column, -90.0, 90.0)
    if options.scale_column is None:
        pixscale = options.pixscale
    else:
        pixscale = options.scale_factor * _number(raw_size, options.scale_column, 0.0, math.inf)
        if pixscale <= 0:
            raise CutoutError(f"{options.scale_column} = {raw_size!r}: must be positive")
    file_loc = f"{IMAGES_FOLDER}/{quote(id_str, safe='')}.{options.image_format}"  # quote keeps names distinct
    return _Cutout(row, id_str, ra, dec, pixscale, options.url(ra, dec, pixscale), file_loc)


def _number(value: Any, column: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not low <= number <= high:  # also false for NaN
        raise CutoutError(f"{column} = {value!r}: not a number in [{low:g}, {high:g}]")
    return number


def _remove_temporaries(images: Path) -> None:
    # Left by a killed run (atomic.atomic_path names them .<name>.<random>.part); never valid cutouts.
    for temporary in images.glob(".*.part"):
        temporary.unlink(missing_ok=True)


def _report(progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _obtain(cutout: _Cutout, out_dir: Path, fetcher: Fetcher) -> tuple[_Cutout, str, str]:
    """(cutout, outcome, failure reason): keep a valid file already present, else fetch it."""
    path = out_dir / cutout.file_loc
    options = fetcher.options
    if path.exists():
        try:
            check_cutout(path.read_bytes(), options.image_format, options.size)
            return cutout, SKIPPED, ""
        except CutoutError:
            pass  # e.g. made with another --size: fetch it again
    try:
        payload = fetcher.fetch(cutout.url)
        check_cutout(payload, options.image_format, options.size)
    except CutoutError as error:
        return cutout, FAILED, str(error)
    write_with(path, lambda temporary: temporary.write_bytes(payload))
    return cutout, DOWNLOADED, ""


def _run_bounded(
    function: Callable[[_Cutout], tuple[_Cutout, str, str]],
    jobs: Iterable[_Cutout],
    workers: int,
    handle: Callable[[tuple[_Cutout, str, str]], None],
    on_abort: Callable[[], None],
) -> None:
    """handle(function(job)) for every job, in finishing order, with at most 2 x workers jobs
    submitted at a time (a catalogue may have 10^5 rows)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cutouts") as pool:
        pending: set[Future] = set()
        try:
            for job in jobs:
                if len(pending) >= 2 * workers:
                    pending = _handle_finished(pending, handle)
                pending.add(pool.submit(function, job))
            while pending:
                pending = _handle_finished(pending, handle)
        except BaseException:
            on_abort()  # Ctrl-C or an error: wake the waiting threads, drop queued jobs
            pool.shutdown(cancel_futures=True)
            raise


def _handle_finished(pending: set[Future], handle: Callable[[Any], None]) -> set[Future]:
    finished, still_pending = wait(pending, return_when=FIRST_COMPLETED)
    for future in finished:
        handle(future.result())
    return still_pending


def _write_catalogue(out_dir: Path, table: pd.DataFrame, kept: list[_Cutout], options: CutoutOptions) -> None:
    """catalog.csv in input order: our columns first, then every other input column."""
    kept = sorted(kept, key=lambda cutout: cutout.row)
    ours = pd.DataFrame([[getattr(cutout, column) for column in CATALOGUE_COLUMNS] for cutout in kept],
                        columns=list(CATALOGUE_COLUMNS))
    replaced = {options.id_column, options.ra_column, options.dec_column, *CATALOGUE_COLUMNS}
    carried = table.iloc[[cutout.row for cutout in kept]].drop(columns=[c for c in table.columns if c in replaced])
    catalogue = pd.concat([ours, carried.reset_index(drop=True)], axis=1)
    write_with(out_dir / "catalog.csv", lambda path: catalogue.to_csv(path, index=False))


def _write_failures(out_dir: Path, failures: list[tuple[int, str, str, str]]) -> None:
    # Always written, so a successful re-run clears the failures of the previous one.
    table = pd.DataFrame(sorted(failures), columns=["row", "id_str", "url", "reason"])
    write_with(out_dir / "failures.csv", lambda path: table.to_csv(path, index=False))
