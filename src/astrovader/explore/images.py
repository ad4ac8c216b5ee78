"""Images served by the explorer, made when first asked for and kept in memory (LRU): a galaxy
as the model saw it (its row of the prepared cache), its reconstruction (mu_z decoded) and
synthetic samples of a component. Only ids and component numbers ever reach this module: no
request names a file."""

from __future__ import annotations

import io
import threading
from functools import lru_cache

import numpy as np
from PIL import Image

from astrovader.analysis.figures import display_image, image_strip
from astrovader.data.loader import to_float
from astrovader.errors import InputError
from astrovader.explore.catalogue import Catalogue, UnknownItem
from astrovader.generate.latents import sample_images
from astrovader.model.inference import decode

IMAGES_KEPT = 4096  # PNGs kept per kind: a few pages of thumbnails, a few kB each
SAMPLES_LIMIT = 64


def png_bytes(image: np.ndarray) -> bytes:
    """PNG of a displayed image in [0, 1]: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; NaN black."""
    pixels = np.round(np.nan_to_num(np.clip(image, 0, 1)) * 255).astype(np.uint8)
    mode = "L" if pixels.ndim == 2 else {3: "RGB", 4: "RGBA"}[pixels.shape[-1]]
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def grid(images: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] as rows of `columns` (the report's `image_strip`), `gap`
    pixels apart; gaps NaN."""
    strips = [image_strip(images[start : start + columns], columns, gap=gap)[0] for start in range(0, len(images), columns)]
    spacer = np.full((gap, *strips[0].shape[1:]), np.nan, np.float32)
    return np.concatenate([part for strip in strips for part in (spacer, strip)][1:])


class Images:
    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.model_lock = threading.Lock()  # one decode at a time: requests share the model
        self.input_png = lru_cache(maxsize=IMAGES_KEPT)(self._input_png)
        self.reconstruction_png = lru_cache(maxsize=IMAGES_KEPT)(self._reconstruction_png)
        self.samples_png = lru_cache(maxsize=256)(self._samples_png)

    def png(self, id_str: str, kind: str) -> bytes:
        position = self.catalogue.position(id_str)
        if self.catalogue.cache_rows[position] < 0:
            raise UnknownItem(f"id {id_str!r}: no image (the model could not read this input)")
        if kind == "input":
            return self.input_png(position)
        if kind == "reconstruction":
            return self.reconstruction_png(position)
        raise UnknownItem(f"image kind {kind!r}: input or reconstruction")

    def _input_png(self, position: int) -> bytes:
        return png_bytes(display_image(to_float(self.catalogue.cache.images[self.catalogue.cache_rows[position]]).numpy()))

    def _reconstruction_png(self, position: int) -> bytes:
        with self.model_lock:
            image = decode(self.catalogue.model, self.catalogue.mu[position : position + 1])[0]
        return png_bytes(display_image(image))

    def _samples_png(self, component: int, seed: int, count: int) -> bytes:
        self.catalogue.check_component(component)
        if not 1 <= count <= SAMPLES_LIMIT:
            raise InputError(f"n {count}: between 1 and {SAMPLES_LIMIT} samples")
        with self.model_lock:
            images, _, _ = sample_images(self.catalogue.model, count, component, seed)
        return png_bytes(grid(images, columns=min(count, 8)))
