"""The cutout services `astrovader cutouts` knows (SDSS, Legacy Survey, any HiPS through CDS
hips2fits), and the options of a download: what to fetch, how politely, and the URL of one
cutout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from astrovader.errors import AstroVaDErError

DEFAULT_BASE_URLS = {
    "sdss": "https://skyserver.sdss.org/dr17/SkyServerWS/ImgCutout",
    "legacy": "https://www.legacysurvey.org/viewer",
    "hips": "https://alasky.cds.unistra.fr/hips-image-services",
}
DEFAULT_LEGACY_LAYER = "ls-dr10"
IMAGE_FORMATS = ("jpg", "fits")


@dataclass(frozen=True)
class CutoutOptions:
    """What to fetch and how politely. Exactly one of `scale_column` and `pixscale` sets the
    pixel scale: arcsec/px = scale_factor x row[scale_column] (the paper: 0.02 x petroR90_r),
    or the fixed `pixscale`."""

    survey: str = "sdss"
    size: int = 256
    scale_column: str | None = None
    scale_factor: float = 0.02
    pixscale: float | None = None
    id_column: str = "id_str"
    ra_column: str = "ra"
    dec_column: str = "dec"
    base_url: str | None = None
    concurrency: int = 4
    rate: float = 5.0
    retries: int = 4
    timeout: float = 30.0
    image_format: str = "jpg"
    backoff: float = 1.0  # seconds before the first retry; doubles on each next one

    def __post_init__(self) -> None:
        kind, _ = parse_survey(self.survey)
        for name in ("size", "scale_factor", "concurrency", "rate", "timeout"):
            value = getattr(self, name)
            _require(name, value, value > 0, "must be positive")  # `> 0` is also False for NaN
        for name in ("retries", "backoff"):
            value = getattr(self, name)
            _require(name, value, value >= 0, "must not be negative")
        if self.pixscale is not None:
            _require("pixscale", self.pixscale, self.pixscale > 0, "must be positive")
        if (self.scale_column is None) == (self.pixscale is None):
            raise AstroVaDErError(
                f"cutouts: scale_column = {self.scale_column!r}, pixscale = {self.pixscale!r}: "
                f"give exactly one (e.g. --scale-column petroR90_r, or --pixscale 0.262)"
            )
        _require("image_format", self.image_format, self.image_format in IMAGE_FORMATS, "must be jpg or fits")
        _require("image_format", self.image_format, kind != "sdss" or self.image_format == "jpg",
                 "the SDSS cutout service only serves JPEG")
        if self.base_url is not None:
            _require("base_url", self.base_url, self.base_url.startswith(("http://", "https://")),
                     "must start with http:// or https://")

    def url(self, ra: float, dec: float, pixscale: float) -> str:
        """The service URL of one cutout centred on (ra, dec) at `pixscale` arcsec/px."""
        kind, variant = parse_survey(self.survey)
        base = (self.base_url or DEFAULT_BASE_URLS[kind]).rstrip("/")
        if kind == "sdss":
            endpoint = f"{base}/getjpeg"
            params = {"ra": ra, "dec": dec, "scale": pixscale, "width": self.size, "height": self.size}
        elif kind == "legacy":
            endpoint = f"{base}/cutout.{self.image_format}"
            params = {"ra": ra, "dec": dec, "layer": variant, "pixscale": pixscale, "size": self.size}
        else:
            endpoint = f"{base}/hips2fits"
            params = {
                "hips": variant, "width": self.size, "height": self.size, "projection": "TAN",
                "fov": self.size * pixscale / 3600.0, "ra": ra, "dec": dec, "format": self.image_format,
            }
        return str(httpx.URL(endpoint, params=params))


def parse_survey(survey: str) -> tuple[str, str]:
    """'sdss' | 'legacy[:<layer>]' | 'hips:<HiPS id>' -> (kind, layer or HiPS id)."""
    kind, _, variant = survey.partition(":")
    if kind == "sdss" and not variant:
        return kind, ""
    if kind == "legacy":
        return kind, variant or DEFAULT_LEGACY_LAYER
    if kind == "hips" and variant:
        return kind, variant
    raise AstroVaDErError(
        f"cutouts: survey = {survey!r}: unknown survey (choose sdss, legacy[:<layer>] or hips:<HiPS id>)"
    )


def _require(name: str, value: Any, condition: bool, problem: str) -> None:
    if not condition:
        raise AstroVaDErError(f"cutouts: {name} = {value!r}: {problem}")
