"""A simulated galaxy (the model behind `astrovader simulate`): its parameters drawn from the
priors (bulge, disk, inclination, PSF, noise, companions), its classes, and its stamp rendered
with GalSim. Everything a galaxy draws comes from the one generator it is given."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import galsim
import numpy as np

PIXEL_SCALE = 0.396  # arcsec per pixel, SDSS
BULGE_DOMINATED_BT = 0.6
EDGE_ON_DEG = 70.0
MORPHOLOGIES = ("bulge-dominated", "disk face-on", "disk edge-on")
LABEL_NAMES = tuple(f"{morphology}{suffix}" for morphology in MORPHOLOGIES for suffix in ("", " + companion"))
COMPANION_FIELDS = ("kind", "dx_px", "dy_px", "flux_ratio", "sersic_n", "hlr_arcsec", "axis_ratio", "position_angle_deg")
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
