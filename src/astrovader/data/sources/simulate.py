"""`astrovader simulate`: SDSS-like galaxy stamps with GalSim, and the truth behind each one (the
galaxy model itself, its priors and rendering: `galaxy_model`).

The project's default data set. Each galaxy is a Sérsic bulge plus an inclined exponential
disk, convolved with a Moffat PSF at the SDSS pixel scale, with sky and read noise; a fraction
of the stamps also hold 1-3 companion sources (small galaxies or stars), because the paper
found its clusters were driven by companions.

Output folder:
    images/<id>.fits   float32, sky-subtracted electrons, one stamp each; key truth in the header
    catalog.csv        id_str, file_loc (images/<id>.fits), label, label_name: ready for `prepare`
    truth.parquet      one row per galaxy: every drawn parameter and the derived classes
    simulation.json    the settings, the parameter distributions, thresholds and conventions

Conventions (also written to simulation.json):
    x = column index, y = row index of the image array; the primary galaxy is centred at
    ((size - 1) / 2, (size - 1) / 2) and companion offsets (dx, dy) are in pixels from there.
    Angles are in degrees, counter-clockwise from +x towards +y (counter-clockwise on screen
    with matplotlib's origin="lower"); position angles are those of the major axis, in [0, 180).
    Inclination: 0 = face-on, 90 = edge-on. Fluxes in electrons.
    Sizes scale with the stamp (disk half-light radius 6-15 % of the side), as survey cutouts
    are sized to their galaxy, so every --size shows the same galaxies; the pixel scale and
    the PSF stay physical (0.396 arcsec/px, FWHM 1.0-1.8 arcsec).

Classes: morphology x companion, label = 2 * morphology + has_companion, where morphology is
bulge-dominated (B/T > 0.6), else disk edge-on (inclination > 70 deg), else disk face-on.

Determinism: galaxy i draws everything (parameters, then noise) from a generator seeded with
(seed, i), so a stamp depends only on the seed, its index and the size, never on the worker
count or chunking. The companion draws come last, so the primaries are the same for every
companion_fraction.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import galsim
import numpy as np

from astrovader.atomic import write_json_atomic, write_with
from astrovader.data import fits
from astrovader.data.sources.galaxy_model import (
    BULGE_DOMINATED_BT, EDGE_ON_DEG, GSPARAMS, LABEL_NAMES, MOFFAT_TRUNCATION, PIXEL_SCALE, PRIORS, SERSIC_TRUNCATION,
    draw_parameters, render,
)
from astrovader.errors import AstroVaDErError
from astrovader.hardware import spawn_map

MAX_CHUNK = 64

# Truth column -> (FITS keyword, comment) for each stamp's header.
HEADER_KEYS = {
    "id_str": ("OBJECT", "galaxy id"),
    "label": ("LABEL", "combined class (simulation.json)"),
    "label_name": ("CLASS", "morphology + companion"),
    "bulge_to_total": ("BT", "bulge-to-total flux ratio"),
    "sersic_n": ("SERSICN", "bulge Sersic index"),
    "bulge_hlr_arcsec": ("BULGEHLR", "[arcsec] bulge half-light radius"),
    "bulge_axis_ratio": ("BULGEQ", "bulge axis ratio b/a"),
    "disk_hlr_arcsec": ("DISKHLR", "[arcsec] face-on disk half-light radius"),
    "inclination_deg": ("INCLIN", "[deg] 0 face-on, 90 edge-on"),
    "disk_axis_ratio": ("DISKQ", "apparent disk axis ratio b/a"),
    "position_angle_deg": ("PA", "[deg] major axis, CCW from +x (column)"),
    "flux_e": ("FLUX", "[e-] primary galaxy flux"),
    "snr": ("SNR", "sky-limited optimal S/N of the primary"),
    "psf_fwhm_arcsec": ("PSFFWHM", "[arcsec] Moffat PSF FWHM"),
    "psf_beta": ("PSFBETA", "Moffat PSF beta"),
    "sky_level_e": ("SKY", "[e-/px] subtracted sky level"),
    "read_noise_e": ("RDNOISE", "[e-/px] read noise"),
    "n_companions": ("NCOMP", "number of companion sources"),
}


@dataclass
class SimulationSummary:
    stamps: int
    size: int
    with_companions: int
    workers: int
    seconds: float
    out: Path

    @property
    def stamps_per_second(self) -> float:
        return self.stamps / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (
            f"{self.stamps} stamps of {self.size}x{self.size} px ({self.with_companions} with companions) "
            f"in {self.seconds:.1f} s = {self.stamps_per_second:.0f} stamps/s on {self.workers} worker(s) -> {self.out}"
        )


@dataclass(frozen=True)
class _Job:
    out: Path
    size: int
    seed: int
    companion_fraction: float
    indices: range


def simulate(
    n: int,
    size: int,
    out: str | Path,
    seed: int = 0,
    companion_fraction: float = 0.5,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Simulate `n` stamps of `size` x `size` px into folder `out` (see the module docstring)."""
    out = Path(out)
    _validate(n, size, seed, companion_fraction, workers, out)
    started = time.perf_counter()
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [_Job(out, size, seed, companion_fraction, indices) for indices in _chunks(n, workers)]
    workers = min(workers, len(jobs))
    rows: list[dict[str, Any]] = []
    for chunk_rows in spawn_map(_simulate_chunk, jobs, workers, initializer=_single_thread):
        rows.extend(chunk_rows)
        if progress is not None:
            progress(len(rows), n)
    import pandas as pd  # here, not at the top: every spawned worker would pay its import

    truth = pd.DataFrame(rows)
    catalog = truth[["id_str", "file_loc", "label", "label_name"]]
    write_with(out / "truth.parquet", lambda path: truth.to_parquet(path, index=False))
    write_with(out / "catalog.csv", lambda path: catalog.to_csv(path, index=False))
    write_json_atomic(out / "simulation.json", _description(n, size, seed, companion_fraction))
    return SimulationSummary(
        n, size, int(truth["has_companion"].sum()), workers, time.perf_counter() - started, out
    )


def _validate(n: int, size: int, seed: int, companion_fraction: float, workers: int, out: Path) -> None:
    checks = (
        ("n", n, n >= 1, "must be at least 1"),
        ("size", size, size >= 8, "must be at least 8 pixels"),
        ("seed", seed, seed >= 0, "must be a non-negative integer"),
        ("companion_fraction", companion_fraction, 0 <= companion_fraction <= 1, "must be between 0 and 1"),
        ("workers", workers, workers >= 1, "must be at least 1"),
        ("out", str(out), out.is_dir() or not out.exists(), "exists and is not a folder"),
    )
    for name, value, valid, requirement in checks:
        if not valid:
            raise AstroVaDErError(f"simulate: {name} = {value!r}: {requirement}")


def _chunks(n: int, workers: int) -> list[range]:
    # Several chunks per worker balance the load and keep the progress bar moving.
    step = max(1, min(MAX_CHUNK, math.ceil(n / (4 * workers))))
    return [range(start, min(start + step, n)) for start in range(0, n, step)]


def _single_thread() -> None:
    # Processes are the parallelism; GalSim's OpenMP is already loaded, so it is told directly.
    os.environ["OMP_NUM_THREADS"] = "1"
    galsim.set_omp_threads(1)


def _simulate_chunk(job: _Job) -> list[dict[str, Any]]:
    rows = []
    for index in job.indices:
        rng = np.random.default_rng([job.seed, index])
        id_str = f"sim{index:06d}"
        truth = {"id_str": id_str, "file_loc": f"images/{id_str}.fits", "index": index}
        truth.update(draw_parameters(rng, job.size, job.companion_fraction))
        pixels, fluxes = render(truth, job.size, rng)
        truth.update(fluxes)
        _write_stamp(job.out / truth["file_loc"], pixels, truth, job.seed)
        rows.append(truth)
    return rows


# -- output -----------------------------------------------------------------------------------
def _write_stamp(path: Path, pixels: np.ndarray, truth: dict[str, Any], seed: int) -> None:
    cards = [(key, truth[column], comment) for column, (key, comment) in HEADER_KEYS.items()]
    cards += [("PIXSCALE", PIXEL_SCALE, "[arcsec/px]"), ("BUNIT", "electron", "sky-subtracted"),
              ("SIMSEED", seed, "astrovader simulate --seed")]
    for i, kind in enumerate(truth["companion_kind"]):
        cards += [
            (f"C{i + 1}KIND", kind, f"companion {i + 1}: galaxy or star"),
            (f"C{i + 1}DX", truth["companion_dx_px"][i], "[px] x offset from the primary"),
            (f"C{i + 1}DY", truth["companion_dy_px"][i], "[px] y offset from the primary"),
            (f"C{i + 1}FLUX", truth["companion_flux_e"][i], "[e-] companion flux"),
        ]
    # Temporary name + rename: a reader never sees half a stamp. No fsync per stamp (too slow);
    # the tables, written last and atomically, are what make a run complete.
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(fits.image_bytes(pixels, cards))
    os.replace(partial, path)


def _description(n: int, size: int, seed: int, companion_fraction: float) -> dict[str, Any]:
    return {
        "n": n, "size": size, "seed": seed, "companion_fraction": companion_fraction,
        "pixel_scale_arcsec": PIXEL_SCALE, "galsim_version": galsim.__version__,
        "gsparams": {"folding_threshold": GSPARAMS.folding_threshold, "maxk_threshold": GSPARAMS.maxk_threshold},
        "sersic_truncation_hlr": SERSIC_TRUNCATION,
        "moffat_truncation_fwhm": MOFFAT_TRUNCATION,
        "priors": asdict(PRIORS),
        "classes": {
            "labels": dict(enumerate(LABEL_NAMES)),
            "bulge_dominated": f"bulge_to_total > {BULGE_DOMINATED_BT}",
            "disk_edge_on": f"not bulge-dominated and inclination_deg > {EDGE_ON_DEG}",
            "disk_face_on": "neither",
            "companion": "n_companions > 0",
        },
        "conventions": {
            "axes": "x = column index, y = row index; primary centred at ((size-1)/2, (size-1)/2)",
            "angles": "degrees, counter-clockwise from +x towards +y; position angle of the major axis in [0, 180)",
            "inclination": "degrees, 0 = face-on, 90 = edge-on",
            "offsets": "companion_dx_px, companion_dy_px: pixels from the primary's centre",
            "units": "pixels in sky-subtracted electrons; fluxes in electrons; sizes in arcsec (half-light radii)",
            "snr": "sqrt(sum(primary^2)) / noise_sigma_e over the noiseless primary (sky-limited, optimal)",
            "components": "bulge_* and disk_* describe both components even when B/T gives one no flux",
            "disk_thickness": "disk scale height / scale radius (GalSim InclinedExponential scale_h_over_r)",
            "disk_axis_ratio": "apparent, sqrt(cos^2 i + disk_thickness^2 sin^2 i), before the PSF",
        },
    }
