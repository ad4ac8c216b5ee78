"""`astrovader simulate`: SDSS-like galaxy stamps with GalSim, and the truth behind each one.

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
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import galsim
import numpy as np

from astrovader.atomic import write_json_atomic, write_with
from astrovader.data import fits
from astrovader.errors import AstroVaDErError
from astrovader.hardware import spawn_map

PIXEL_SCALE = 0.396  # arcsec per pixel, SDSS
BULGE_DOMINATED_BT = 0.6
EDGE_ON_DEG = 70.0
MORPHOLOGIES = ("bulge-dominated", "disk face-on", "disk edge-on")
LABEL_NAMES = tuple(f"{morphology}{suffix}" for morphology in MORPHOLOGIES for suffix in ("", " + companion"))
COMPANION_FIELDS = ("kind", "dx_px", "dy_px", "flux_ratio", "sersic_n", "hlr_arcsec", "axis_ratio", "position_angle_deg")
MAX_CHUNK = 64
# Looser than GalSim's defaults (5e-3, 1e-3): ~2x faster FFTs, errors far below the noise.
GSPARAMS = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)
# SDSS model fits truncate de Vaucouleurs profiles at 8 r_e; it also shrinks the FFTs.
SERSIC_TRUNCATION = 8.0
# In FWHM (< 0.2 % of the light lies beyond). Truncated, a Moffat's Fourier transform is a
# table built once per object (~20 ms) instead of Bessel functions at every k (~1 ms per stamp).
MOFFAT_TRUNCATION = 5.0


@dataclass(frozen=True)
class Priors:
    """Parameter distributions. (low, high) pairs are uniform unless named log-uniform."""

    pure_disk_probability: float = 0.15
    pure_bulge_probability: float = 0.10  # the rest: B/T uniform in (0, 1)
    sersic_grid: tuple[float, ...] = (1.5, 2.5, 3.5, 4.0)  # a fixed grid: GalSim caches per index
    disk_hlr_fraction: tuple[float, float] = (0.06, 0.15)  # log-uniform, of the stamp side
    bulge_to_disk_hlr: tuple[float, float] = (0.3, 1.0)
    bulge_axis_ratio: tuple[float, float] = (0.5, 1.0)
    disk_thickness: tuple[float, float] = (0.08, 0.15)  # scale height / scale radius
    psf_fwhm_arcsec: tuple[float, float] = (1.0, 1.8)
    psf_beta_grid: tuple[float, ...] = (3.0, 3.5, 4.0, 4.7)  # a grid, so each Moffat table is reused
    sky_level_e: tuple[float, float] = (400.0, 900.0)  # per pixel, subtracted after the noise
    read_noise_e: float = 5.0
    snr: tuple[float, float] = (50.0, 500.0)  # log-uniform, sky-limited optimal S/N of the primary
    companion_count_probabilities: tuple[float, ...] = (0.6, 0.3, 0.1)  # for 1, 2, 3 companions
    companion_star_probability: float = 0.35
    companion_offset_fraction: tuple[float, float] = (0.12, 0.30)  # of the side; the 75 % crop ends at 0.375
    companion_flux_ratio: tuple[float, float] = (0.1, 0.6)  # log-uniform, of the primary's flux; fainter ones drown in the noise
    companion_hlr_ratio: tuple[float, float] = (0.2, 0.5)  # of the primary's disk half-light radius
    companion_axis_ratio: tuple[float, float] = (0.4, 1.0)


PRIORS = Priors()

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


# -- parameters -------------------------------------------------------------------------------
def draw_parameters(rng: np.random.Generator, size: int, companion_fraction: float) -> dict[str, Any]:
    """Every random parameter of one stamp except the noise pixels, and its classes."""
    p = PRIORS
    disk_hlr = size * PIXEL_SCALE * _log_uniform(rng, p.disk_hlr_fraction)
    thickness = rng.uniform(*p.disk_thickness)
    inclination = math.degrees(math.acos(rng.uniform(0.0, 1.0)))  # isotropic orientations
    truth = {
        "bulge_to_total": _bulge_to_total(rng),
        "sersic_n": float(rng.choice(p.sersic_grid)),
        "bulge_hlr_arcsec": disk_hlr * rng.uniform(*p.bulge_to_disk_hlr),
        "bulge_axis_ratio": rng.uniform(*p.bulge_axis_ratio),
        "disk_hlr_arcsec": disk_hlr,
        "disk_thickness": thickness,
        "inclination_deg": inclination,
        "disk_axis_ratio": apparent_axis_ratio(inclination, thickness),
        "position_angle_deg": rng.uniform(0.0, 180.0),
        "psf_fwhm_arcsec": rng.uniform(*p.psf_fwhm_arcsec),
        "psf_beta": float(rng.choice(p.psf_beta_grid)),
        "sky_level_e": rng.uniform(*p.sky_level_e),
        "read_noise_e": p.read_noise_e,
        "snr": _log_uniform(rng, p.snr),
    }
    truth["noise_sigma_e"] = math.sqrt(truth["sky_level_e"] + truth["read_noise_e"] ** 2)
    truth.update(_draw_companions(rng, size, disk_hlr, companion_fraction))
    return {**classify(truth["bulge_to_total"], inclination, truth["n_companions"]), **truth}


def classify(bulge_to_total: float, inclination_deg: float, n_companions: int) -> dict[str, Any]:
    """The discrete classes: morphology, has_companion, and their combination label / label_name."""
    shape = morphology(bulge_to_total, inclination_deg)
    label = 2 * MORPHOLOGIES.index(shape) + int(n_companions > 0)
    return {"label": label, "label_name": LABEL_NAMES[label], "morphology": shape, "has_companion": n_companions > 0}


def morphology(bulge_to_total: float, inclination_deg: float) -> str:
    if bulge_to_total > BULGE_DOMINATED_BT:
        return "bulge-dominated"
    return "disk edge-on" if inclination_deg > EDGE_ON_DEG else "disk face-on"


def apparent_axis_ratio(inclination_deg: float, thickness: float) -> float:
    """Hubble's (1926) oblate-disk formula: q^2 = cos^2 i + q0^2 sin^2 i, q0 = thickness."""
    inclination = math.radians(inclination_deg)
    return math.sqrt(math.cos(inclination) ** 2 + (thickness * math.sin(inclination)) ** 2)


def _bulge_to_total(rng: np.random.Generator) -> float:
    kind = rng.uniform()
    if kind < PRIORS.pure_disk_probability:
        return 0.0
    if kind < PRIORS.pure_disk_probability + PRIORS.pure_bulge_probability:
        return 1.0
    return rng.uniform(0.0, 1.0)


def _draw_companions(rng, size, disk_hlr, companion_fraction) -> dict[str, Any]:
    """1-3 companions with probability `companion_fraction`, as one list column per field."""
    p = PRIORS
    count = 0
    if rng.uniform() < companion_fraction:
        count = 1 + int(rng.choice(len(p.companion_count_probabilities), p=p.companion_count_probabilities))
    companions = [_draw_companion(rng, size, disk_hlr) for _ in range(count)]
    columns = {f"companion_{field}": [companion[field] for companion in companions] for field in COMPANION_FIELDS}
    return {"n_companions": count, **columns}


def _draw_companion(rng: np.random.Generator, size: int, disk_hlr: float) -> dict[str, Any]:
    p = PRIORS
    radius = size * rng.uniform(*p.companion_offset_fraction)
    direction = rng.uniform(0.0, 2 * math.pi)
    is_star = rng.uniform() < p.companion_star_probability
    flux_ratio = _log_uniform(rng, p.companion_flux_ratio)
    shape = {  # drawn for stars too (then NaN), so every companion takes the same draws
        "sersic_n": float(rng.choice(p.sersic_grid)),
        "hlr_arcsec": disk_hlr * rng.uniform(*p.companion_hlr_ratio),
        "axis_ratio": rng.uniform(*p.companion_axis_ratio),
        "position_angle_deg": rng.uniform(0.0, 180.0),
    }
    return {
        "kind": "star" if is_star else "galaxy",
        "dx_px": radius * math.cos(direction),
        "dy_px": radius * math.sin(direction),
        "flux_ratio": flux_ratio,
        **{field: math.nan if is_star else value for field, value in shape.items()},
    }


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))


# -- rendering --------------------------------------------------------------------------------
def render(truth: dict[str, Any], size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The stamp described by `truth` with noise from `rng`, and the fluxes that give its S/N."""
    psf = _unit_fwhm_moffat(truth["psf_beta"]).dilate(truth["psf_fwhm_arcsec"])
    image = _through(psf, _primary(truth)).drawImage(nx=size, ny=size, scale=PIXEL_SCALE)
    # Drawn at unit flux, then scaled so that the sky-limited optimal S/N is the drawn one.
    flux = truth["snr"] * truth["noise_sigma_e"] / float(np.sqrt(np.sum(image.array.astype(np.float64) ** 2)))
    image *= flux
    fluxes = {
        "flux_e": flux,
        "bulge_flux_e": flux * truth["bulge_to_total"],
        "disk_flux_e": flux * (1.0 - truth["bulge_to_total"]),
        "companion_flux_e": [flux * ratio for ratio in truth["companion_flux_ratio"]],
    }
    if truth["n_companions"]:
        _through(psf, _companions(truth, fluxes["companion_flux_e"])).drawImage(image=image, add_to_image=True)
    return _add_noise(image.array, truth["sky_level_e"], truth["read_noise_e"], rng), fluxes


def _through(psf: galsim.GSObject, profile: galsim.GSObject) -> galsim.GSObject:
    # By FFT: for two truncated profiles GalSim would choose (and, when refused, recommend) a
    # real-space convolution, which is far slower here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", galsim.GalSimWarning)
        return galsim.Convolve(profile, psf, real_space=False, gsparams=GSPARAMS)


def _primary(truth: dict[str, Any]) -> galsim.GSObject:
    """Unit-flux bulge + disk; a component with no flux is left out (it would only cost time)."""
    angle = truth["position_angle_deg"] * galsim.degrees
    bulge_to_total = truth["bulge_to_total"]
    components = []
    if bulge_to_total > 0:
        bulge = _sersic(truth["sersic_n"], truth["bulge_hlr_arcsec"], bulge_to_total)
        components.append(bulge.shear(q=truth["bulge_axis_ratio"], beta=angle))
    if bulge_to_total < 1:
        disk = galsim.InclinedExponential(
            truth["inclination_deg"] * galsim.degrees, half_light_radius=truth["disk_hlr_arcsec"],
            scale_h_over_r=truth["disk_thickness"], flux=1.0 - bulge_to_total, gsparams=GSPARAMS,
        )
        components.append(disk.rotate(angle))  # its major axis starts along +x
    return galsim.Add(components, gsparams=GSPARAMS)


def _companions(truth: dict[str, Any], companion_fluxes: list[float]) -> galsim.GSObject:
    sources = []
    for i, (kind, flux) in enumerate(zip(truth["companion_kind"], companion_fluxes)):
        if kind == "star":
            source = galsim.DeltaFunction(flux=flux, gsparams=GSPARAMS)
        else:
            source = _sersic(truth["companion_sersic_n"][i], truth["companion_hlr_arcsec"][i], flux).shear(
                q=truth["companion_axis_ratio"][i], beta=truth["companion_position_angle_deg"][i] * galsim.degrees
            )
        offset = (truth["companion_dx_px"][i] * PIXEL_SCALE, truth["companion_dy_px"][i] * PIXEL_SCALE)
        sources.append(source.shift(*offset))
    return galsim.Add(sources, gsparams=GSPARAMS)


@lru_cache(maxsize=None)
def _unit_fwhm_moffat(beta: float) -> galsim.Moffat:
    return galsim.Moffat(beta=beta, fwhm=1.0, trunc=MOFFAT_TRUNCATION, gsparams=GSPARAMS)


def _sersic(index: float, half_light_radius: float, flux: float) -> galsim.Sersic:
    return galsim.Sersic(
        index, half_light_radius=half_light_radius, flux=flux,
        trunc=SERSIC_TRUNCATION * half_light_radius, gsparams=GSPARAMS,
    )


def _add_noise(pixels: np.ndarray, sky_level: float, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise on source + sky, Gaussian read noise, then the sky subtracted (as SDSS frames)."""
    expected = np.clip(pixels.astype(np.float64) + sky_level, 0.0, None)  # FFT ringing can dip below 0
    counts = rng.poisson(expected) + rng.normal(0.0, read_noise, size=pixels.shape)
    return (counts - sky_level).astype(np.float32)


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
