"""Fetching cutouts: HTTP GETs spaced by one global rate limit and retried with exponential
back-off (timeouts, connection errors, 5xx; never 4xx), and the check that a payload is a
complete image of the expected size."""

from __future__ import annotations

import io
import threading
import time

import httpx
from PIL import Image, UnidentifiedImageError

from astrovader import __version__
from astrovader.data import fits
from astrovader.data.sources.surveys import CutoutOptions
from astrovader.errors import AstroVaDErError, ImageError

MAX_BACKOFF_SECONDS = 60.0


class CutoutError(AstroVaDErError):
    """One row that cannot become a cutout; its message is the reason in failures.csv."""


def check_cutout(payload: bytes, image_format: str, size: int) -> None:
    """Raise CutoutError unless `payload` is a complete JPEG/FITS image of size x size pixels."""
    shape = _fits_shape(payload) if image_format == "fits" else _picture_shape(payload)
    if shape[-2:] != (size, size):
        raise CutoutError(f"invalid payload: image shape {shape}, expected {size} x {size} px")


def _picture_shape(payload: bytes) -> tuple[int, ...]:
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()  # a full decode: truncated files fail here
            return image.height, image.width
    except UnidentifiedImageError:
        raise CutoutError(f"invalid payload: not an image ({len(payload)} bytes, starting {payload[:40]!r})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise CutoutError(f"invalid payload: corrupt or truncated image ({error})") from None


def _fits_shape(payload: bytes) -> tuple[int, ...]:
    if not payload or len(payload) % fits.BLOCK:
        raise CutoutError(f"invalid payload: truncated or not FITS ({len(payload)} bytes, starting {payload[:40]!r})")
    try:
        return fits.first_image(payload).shape
    except ImageError as error:
        raise CutoutError(f"invalid payload: {error}") from None


class Fetcher:
    """One HTTP client shared by the worker threads, behind one rate limit, with retries."""

    def __init__(self, options: CutoutOptions):
        self.options = options
        self.client = httpx.Client(
            timeout=options.timeout,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=options.concurrency),
            headers={"User-Agent": f"astrovader/{__version__} (galaxy cutouts)"},
        )
        self.requests = 0
        self._interval = 1.0 / options.rate
        self._next_start = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def stop(self) -> None:
        """Make waiting threads give up at once (the run is being interrupted)."""
        self._stopping.set()

    def fetch(self, url: str) -> bytes:
        """The body of a 2xx answer; retries transient problems, raises CutoutError otherwise."""
        problem = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                self._sleep(min(MAX_BACKOFF_SECONDS, self.options.backoff * 2 ** (attempt - 1)))
            self._wait_for_turn()
            try:
                response = self.client.get(url)
            except httpx.TransportError as error:  # timeouts, refused or reset connections, cut bodies
                problem = _describe(error)
                continue
            except httpx.RequestError as error:  # redirect loops, undecodable bodies: not transient
                raise CutoutError(_describe(error)) from None
            if response.is_server_error:
                problem = f"HTTP {response.status_code} {response.reason_phrase}"
                continue
            if not response.is_success:  # 4xx: asking again would get the same answer, so never retried
                raise CutoutError(f"HTTP {response.status_code} {response.reason_phrase}")
            return response.content
        raise CutoutError(f"{problem} (gave up after {self.options.retries + 1} attempts)")

    def _wait_for_turn(self) -> None:
        """Space request starts 1/rate seconds apart across all threads."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
            self.requests += 1
        self._sleep(start - now)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise CutoutError("interrupted")


def _describe(error: Exception) -> str:
    return f"{error.__class__.__name__}: {error}" if str(error) else error.__class__.__name__
