"""Decode one image file and preprocess it exactly as the paper (section 2), step by step.

read_image:  JPEG / PNG (Pillow), FITS 2-D or band cube (astropy), .npy, IDX rows
             -> float32 array (bands, height, width)
preprocess:  non-finite policy -> [turn the major axis horizontal] -> central crop
             -> gray (band average) or keep 3 bands -> antialiased resize -> [neighbours masked]
             -> [flipped to the light] -> scale to [0, 1]
             -> uint8 (bands, size, size)

The sky-aware scalings (`peak`, `asinh`) measure each image's sky level and noise on a
sigma-clipped border frame, subtract the sky, and divide by the galaxy's robust peak, so that
faint and bright galaxies, and quiet and noisy skies, look alike except for their noise; the
sky then sits at `sky_level` (not 0), so that the negative half of the noise survives.

Every failure raises ImageError whose message is the reason written to rejects.csv.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from astrovader.config import DataConfig
from astrovader.data import fits
from astrovader.errors import ImageError

_FILTERS = {
    "area": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
}
# Source masking (`data.neighbours`), SExtractor-like: sources are segments of the image smoothed
# by 1 px that lie MASK_SIGMA above the sky over at least MASK_MIN_PX connected pixels; a
# segment with two peaks is split when the fainter holds MASK_DEBLEND_CONTRAST of its light
# (SExtractor's DEBLEND_MINCONT); masks grow by MASK_GROW_PX to cover the sources' faint wings.
MASK_SIGMA, MASK_MIN_PX, MASK_DEBLEND_CONTRAST, MASK_GROW_PX = 2.0, 5, 0.005, 2


def read_image(file_loc: str) -> np.ndarray:
    """Read `file_loc` (optionally `path#index` for one image of a stack) as (bands, H, W)."""
    if not file_loc:
        raise ImageError("no file given")
    path_text, _, index = file_loc.partition("#")
    path = Path(path_text)
    if not path.is_file():
        raise ImageError("missing file")
    if path.stat().st_size == 0:
        raise ImageError("empty file (0 bytes)")
    name = path.name.lower()
    if "idx" in name and "ubyte" in name:
        image = _decode_stack_row(path, index)
    elif name.endswith(".npy"):
        image = _decode_npy(path, index)
    elif name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz", ".fz")):
        image = fits.first_image(path)
    else:
        image = _decode_pillow(path)
    return _as_bands_first(image)


def _decode_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            opened.load()  # forces a full decode, so truncated files fail here
            if opened.mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr"):
                opened = opened.convert("RGB" if opened.mode != "LA" else "L")
            elif opened.mode not in ("L", "RGB", "I", "I;16", "F"):
                opened = opened.convert("RGB")
            array = np.asarray(opened, dtype=np.float32)
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"corrupt or truncated image ({error})") from None
    return array if array.ndim == 2 else np.moveaxis(array, -1, 0)


def _decode_npy(path: Path, index: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as error:  # noqa: BLE001
        raise ImageError(f"unreadable .npy ({error.__class__.__name__}: {error})") from None
    if index:
        array = _row(array, index)
    return np.asarray(array, dtype=np.float32)


def _decode_stack_row(path: Path, index: str) -> np.ndarray:
    from astrovader.data.idx import cached_idx

    try:
        stack = cached_idx(str(path))
    except Exception as error:  # noqa: BLE001
        raise ImageError(str(error)) from None
    return np.asarray(_row(stack, index), dtype=np.float32)


def _row(stack: np.ndarray, index: str) -> np.ndarray:
    try:
        return stack[int(index)]
    except (ValueError, IndexError):
        raise ImageError(f"no image #{index} in a stack of {len(stack)}") from None


def _as_bands_first(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image[None]
    if image.ndim == 3:
        # (H, W, B) with few bands last, as images and many .npy files are stored.
        if image.shape[-1] <= 4 and image.shape[0] > 4:
            image = np.moveaxis(image, -1, 0)
        return np.ascontiguousarray(image)
    raise ImageError(f"expected a 2-D image or a band cube, got shape {image.shape}")


def preprocess(image: np.ndarray, config: DataConfig) -> np.ndarray:
    """(bands, H, W) float -> uint8 (config.bands, size, size) scaled to [0, 255]."""
    image = handle_nonfinite(image, config.nonfinite)
    if config.orientation != "none":
        image = rotate_to_major_axis(image)
    image = central_crop(image, config)
    image = to_bands(image, config.color)
    image = resize(image, config.image_size, config.resize_filter)
    if config.neighbours != "keep":
        image = mask_neighbours(image, deblend=config.neighbours == "mask-blended")
    if config.orientation == "canonical":
        image = flip_to_light(image)
    image = scale(image, config)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def handle_nonfinite(image: np.ndarray, policy: str) -> np.ndarray:
    finite = np.isfinite(image)
    if finite.all():
        return image
    if not finite.any():
        raise ImageError("all pixels are NaN or infinite")
    if policy == "reject":
        raise ImageError(f"{int((~finite).sum())} NaN or infinite pixels")
    fill = 0.0 if policy == "zero" else float(np.median(image[finite]))
    return np.where(finite, image, fill).astype(np.float32)


def central_crop(image: np.ndarray, config: DataConfig) -> np.ndarray:
    height, width = image.shape[-2:]
    if config.crop_pixels is not None:
        side = config.crop_pixels
        if min(height, width) < side:
            raise ImageError(f"image {width}x{height} px is smaller than the {side} px crop")
    else:
        side = max(1, int(round(config.crop_fraction * min(height, width))))
    top, left = (height - side) // 2, (width - side) // 2
    return image[:, top : top + side, left : left + side]


def to_bands(image: np.ndarray, color: str) -> np.ndarray:
    if color == "gray":
        return image.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    if image.shape[0] != 3:
        raise ImageError(f"has {image.shape[0]} band(s), colour mode needs 3")
    return image


def resize(image: np.ndarray, size: int, method: str) -> np.ndarray:
    if image.shape[-2:] == (size, size):
        return image
    resample = _FILTERS[method]
    bands = [
        np.asarray(Image.fromarray(np.ascontiguousarray(band, dtype=np.float32), mode="F").resize((size, size), resample))
        for band in image
    ]
    return np.stack(bands)


def scale(image: np.ndarray, config: DataConfig) -> np.ndarray:
    """To [0, 1]: per-image min-max (the public code), a fixed divisor, or sky-subtracted and
    divided by the galaxy's peak, linearly (`peak`) or through an asinh stretch whose knee is
    `asinh_softening` noise sigmas (`asinh`), with the sky at `sky_level`."""
    if config.scaling == "fixed":
        return np.clip(image / config.fixed_max, 0.0, 1.0)
    if config.scaling == "minmax":
        low, high = float(image.min()), float(image.max())
        if high <= low:  # a constant image carries no shape: all zeros, never NaN
            return np.zeros_like(image)
        return (image - low) / (high - low)
    sky, sigma = sky_and_noise(image)
    signal = image - sky[:, None, None]
    peak = robust_peak(signal)
    if peak <= 0:  # nothing above the sky: the sky alone
        return np.full_like(image, config.sky_level)
    if config.scaling == "asinh":
        knee = config.asinh_softening * max(float(sigma.mean()), 1e-6 * peak)
        signal, peak = np.arcsinh(signal / knee), float(np.arcsinh(peak / knee))
    return np.clip(config.sky_level + (1.0 - config.sky_level) * signal / peak, 0.0, 1.0)


def border_frame(image: np.ndarray) -> np.ndarray:
    """The pixels of a frame 1/16 of the side wide (at least 2 px), per band: (bands, n)."""
    height, width = image.shape[-2:]
    width_px = max(2, min(height, width) // 16)
    mask = np.ones((height, width), dtype=bool)
    mask[width_px:-width_px, width_px:-width_px] = False
    return image[:, mask]


def sky_and_noise(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band, the sky level and the noise sigma: 3-sigma-clipped median and standard deviation
    of the border frame (a companion or a star crossing it is clipped away)."""
    from astropy.stats import sigma_clipped_stats

    _, median, std = sigma_clipped_stats(border_frame(image), sigma=3.0, maxiters=5, axis=1)
    return np.nan_to_num(np.asarray(median, dtype=np.float64)), np.nan_to_num(np.asarray(std, dtype=np.float64))


def robust_peak(signal: np.ndarray) -> float:
    """The galaxy's peak: the brightest 3x3 mean of the band average in the central half of the
    stamp (one hot pixel, or a companion near the edge, does not set the scale)."""
    from scipy.ndimage import uniform_filter

    plane = signal.mean(axis=0)
    height, width = plane.shape
    centre = plane[height // 4 : height - height // 4, width // 4 : width - width // 4]
    return float(uniform_filter(centre, size=3, mode="nearest").max())


def mask_neighbours(image: np.ndarray, deblend: bool = False) -> np.ndarray:
    """The image with every source but the central galaxy replaced by sky noise: the segments
    found by photutils (see MASK_SIGMA), split by its deblending when `deblend`; the central
    galaxy is the segment under the centre. The masked pixels get the border's sky and noise,
    drawn from a generator seeded by the pixels (same image, same fill)."""
    from photutils.segmentation import deblend_sources, detect_sources
    from scipy.ndimage import binary_dilation, gaussian_filter

    plane = image.mean(axis=0)
    smoothed = gaussian_filter(plane, 1.0, mode="nearest")
    sky, sigma = sky_and_noise(smoothed[None])
    if sigma[0] <= 0:
        return image
    segments = detect_sources(smoothed - sky[0], MASK_SIGMA * sigma[0], n_pixels=MASK_MIN_PX)
    if segments is None:
        return image
    if deblend:
        segments = deblend_sources(smoothed - sky[0], segments, n_pixels=MASK_MIN_PX, contrast=MASK_DEBLEND_CONTRAST,
                                   progress_bar=False)
    labels = segments.data
    central = labels[labels.shape[0] // 2, labels.shape[1] // 2]
    if central == 0:  # nothing detected at the centre: no galaxy to keep apart from the rest
        return image
    others = binary_dilation((labels > 0) & (labels != central), iterations=MASK_GROW_PX) & (labels != central)
    if not others.any():
        return image
    band_sky, band_sigma = sky_and_noise(image)
    noise = np.random.default_rng(zlib.crc32(image.tobytes())).standard_normal(image.shape)
    fill = band_sky[:, None, None] + band_sigma[:, None, None] * noise
    return np.where(others[None], fill, image).astype(np.float32)


def major_axis_angle(image: np.ndarray, iterations: int = 5) -> float:
    """Position angle (degrees, counter-clockwise from +x = the column axis, +y = the row axis)
    of the central galaxy's major axis, from its second moments inside an adaptive elliptical
    Gaussian window centred on the stamp (the window follows the galaxy, so companions and the
    sky barely count)."""
    plane = image.mean(axis=0)
    sky, _ = sky_and_noise(plane[None])
    light = np.clip(plane - sky[0], 0.0, None)
    height, width = plane.shape
    y, x = np.mgrid[:height, :width]
    x, y = x - (width - 1) / 2, y - (height - 1) / 2
    window = np.eye(2) * (min(height, width) * 0.06) ** 2  # start: a round window of 6 % of the side
    moments = np.zeros(3)
    for _ in range(iterations):
        inverse = np.linalg.inv(window)
        weight = light * np.exp(-0.5 * (inverse[0, 0] * x * x + 2 * inverse[0, 1] * x * y + inverse[1, 1] * y * y))
        total = weight.sum()
        if total <= 0:
            return 0.0
        moments = np.array([(weight * x * x).sum(), (weight * y * y).sum(), (weight * x * y).sum()]) / total
        # A Gaussian's moments inside a matched Gaussian window are half its own: double them.
        window = 2 * np.array([[moments[0], moments[2]], [moments[2], moments[1]]]) + 0.5 * np.eye(2)
    xx, yy, xy = moments
    return float(np.degrees(0.5 * np.arctan2(2 * xy, xx - yy)))


def flip_to_light(image: np.ndarray) -> np.ndarray:
    """The image flipped left-right and up-down so that the centroid of its light above the sky
    (beyond 2 noise sigmas) lies towards its last column and last row: after the turn to the major axis
    only these flips are left free, and without them a companion on either side is a different
    picture to the model."""
    plane = image.mean(axis=0)
    sky, sigma = sky_and_noise(plane[None])
    light = np.clip(plane - sky[0] - 2.0 * sigma[0], 0.0, None)
    height, width = plane.shape
    y, x = np.mgrid[:height, :width]
    if (light * (x - (width - 1) / 2)).sum() < 0:
        image = image[..., ::-1]
    if (light * (y - (height - 1) / 2)).sum() < 0:
        image = image[..., ::-1, :]
    return np.ascontiguousarray(image)


def rotate_to_major_axis(image: np.ndarray) -> np.ndarray:
    """The image turned so that the central galaxy's major axis lies along +x (bilinear; the
    corners are filled from the nearest edge pixels)."""
    from scipy.ndimage import rotate

    angle = major_axis_angle(image)
    return rotate(image, angle, axes=(2, 1), reshape=False, order=1, mode="nearest").astype(np.float32)
