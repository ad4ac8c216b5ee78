"""FITS, the one place that reads and writes it by hand: a complete file is a whole number of
2880-byte blocks; the first 2-D (or band cube) image of a file; a float32 image stack streamed
block by block (generated samples); a single-HDU float32 image written without astropy's
per-card validation (the simulator writes thousands a second)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from astrovader.errors import ImageError

BLOCK = 2880


def first_image(source: str | Path | bytes) -> np.ndarray:
    """The first image HDU with 2 or more axes of a FITS file (a path, or its bytes), as float32."""
    from astropy.io import fits

    try:
        with fits.open(io.BytesIO(source) if isinstance(source, bytes) else source, memmap=False) as hdus:
            for hdu in hdus:
                if hdu.data is not None and getattr(hdu, "is_image", False) and hdu.data.ndim >= 2:
                    return np.asarray(hdu.data, dtype=np.float32)
    except Exception as error:  # noqa: BLE001 - astropy raises many kinds for bad files
        raise ImageError(f"unreadable FITS ({error.__class__.__name__}: {error})") from None
    raise ImageError("FITS file has no image data")


def image_stream(path: Path, shape: tuple[int, ...], cards: list[tuple]
                 ) -> tuple[Callable[[np.ndarray], None], Callable[[], None]]:
    """(write, close) of a float32 FITS image of images (N, C, H, W) streamed in order, block by
    block (astropy's StreamingHDU); a gray stack is a cube (N, H, W), colour keeps its band axis.
    `cards`: header cards after the mandatory ones."""
    from astropy.io import fits

    cube = shape if shape[1] > 1 else (shape[0], *shape[2:])
    header = fits.Header(
        [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", len(cube))]
        + [(f"NAXIS{axis + 1}", size) for axis, size in enumerate(reversed(cube))]  # fastest axis first
        + [("EXTEND", True), *cards]
    )
    stream = fits.StreamingHDU(str(path), header)

    def write(images: np.ndarray) -> None:
        stream.write(np.ascontiguousarray(images.reshape(len(images), *cube[1:]), dtype=np.float32))

    return write, stream.close


def image_bytes(pixels: np.ndarray, cards: list[tuple[str, Any, str]]) -> bytes:
    """A single-HDU float32 FITS file. Written by hand because astropy spends ~3 ms per
    stamp validating header cards, more than drawing the galaxy; astropy reads it back."""
    height, width = pixels.shape
    mandatory = [("SIMPLE", True, "FITS standard"), ("BITPIX", -32, "IEEE float32"), ("NAXIS", 2, ""),
                 ("NAXIS1", width, "columns"), ("NAXIS2", height, "rows")]
    header = "".join(_card(*card) for card in mandatory + cards) + "END".ljust(80)
    data = np.ascontiguousarray(pixels, dtype=">f4").tobytes()
    return _pad(header.encode("ascii"), b" ") + _pad(data, b"\0")


def _card(key: str, value: Any, comment: str) -> str:
    if isinstance(value, bool):
        text = ("T" if value else "F").rjust(20)
    elif isinstance(value, int):
        text = str(value).rjust(20)
    elif isinstance(value, float):
        number = format(value, ".10G")  # FITS reals need a '.' or an exponent
        text = (number if "." in number or "E" in number else number + ".").rjust(20)
    else:
        text = ("'" + str(value).replace("'", "''").ljust(8) + "'").ljust(20)
    return f"{key:<8}= {text} / {comment}"[:80].ljust(80)


def _pad(block: bytes, fill: bytes) -> bytes:
    return block + fill * (-len(block) % BLOCK)
