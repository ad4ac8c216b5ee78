"""The figures of generation (Figs. 9-12; `analysis.figures.image_grid`: one row of images per
axes), and the report's hook that makes Figs. 9-11 from a data set's embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from astrovader.analysis.figures import ImageRow, image_grid, image_strip
from astrovader.atomic import write_with
from astrovader.data.loader import seed_for
from astrovader.generate.latents import Traversal, sample_images, traversal
from astrovader.generate.tour import Tour, top_members, tour
from astrovader.model.vade import VaDE


def samples_png(images: np.ndarray, title: str, path: Path, columns: int | None = None) -> Path:
    """A PNG of synthetic images (N, C, H, W) in [0, 1] in a square-ish grid, 2-pixel white
    gaps, at the images' own resolution, the title in a band above; drawn with Pillow, not
    matplotlib (a generation run draws one per component: ~5 ms each instead of ~200)."""
    columns = columns or max(1, int(np.ceil(np.sqrt(len(images)))))
    strips = [image_strip(images[start : start + columns], columns)[0] for start in range(0, len(images), columns)]
    gap = np.full((2, *strips[0].shape[1:]), np.nan, np.float32)
    grid = np.concatenate([piece for strip in strips for piece in (gap, strip)][1:])
    if grid.ndim == 3:  # colour: RGB with an alpha band that is 0 in the gaps
        grid = np.where(grid[..., 3:] > 0, grid[..., :3], np.nan)
    pixels = np.round(np.nan_to_num(np.clip(grid, 0, 1), nan=1.0) * 255).astype(np.uint8)
    band = 16
    canvas = Image.new("L" if pixels.ndim == 2 else "RGB", (pixels.shape[1], pixels.shape[0] + band), "white")
    canvas.paste(Image.fromarray(pixels), (0, band))
    ImageDraw.Draw(canvas).text((2, 2), title, fill="black")
    return write_with(Path(path), lambda temporary: canvas.save(temporary, format="PNG"))


def tour_figure(result: Tour) -> Figure:
    """Fig. 10: one column per leg, from one component's most probable member to the next."""
    nxt = np.roll(result.components, -1)
    labels = [f"{a}→{b}" for a, b in zip(result.components, nxt)][: result.images.shape[0]]
    title = f"tour through {len(result.components)} components, latent length {result.length:.2f}"
    return image_grid([ImageRow("", step) for step in result.images.swapaxes(0, 1)], labels, title)


def traversal_figure(result: Traversal) -> Figure:
    """Fig. 11: one row per latent variable, from its minimum (left) to its maximum (right)."""
    width = max(2, len(str(len(result.values) - 1)))
    rows = [ImageRow(f"z_{j:0{width}d}", images) for j, images in enumerate(result.images)]
    return image_grid(rows, title="latent traversal: minimum → maximum, others at their mean")


def strip_figure(images: np.ndarray, left: str, right: str, title: str | None = None) -> Figure:
    """Figs. 12 and pairs: one row of images (steps, C, H, W), the ends labelled."""
    labels = [left, *[""] * (len(images) - 2), right]
    return image_grid([ImageRow("", images)], labels, title)


def synthetic_figure(model: VaDE, per_component: int = 8, seed: int = 0, variance_scale: float = 1.0) -> Figure:
    """Fig. 9: one row of synthetic images per component (each row seeded by (seed, component))."""
    components = range(model.prior.n_components)
    rows = [ImageRow(f"c = {c}", sample_images(model, per_component, c, seed_for(seed, c), variance_scale)[0])
            for c in components]
    return image_grid(rows, title="synthetic galaxies: z ~ N(mu_c, sigma_c^2), decoded")


def report_figures(model: VaDE, mu: np.ndarray, gamma: np.ndarray, seed: int = 0) -> Iterator[tuple[str, Figure, str]]:
    """(name, Figure, caption) for Figs. 9-11 from the embeddings of a data set (the report's hook).
    Fig. 12 needs the pixels and a chosen clean component: `deblend` / `astrovader generate`."""
    yield "synthetic", synthetic_figure(model, seed=seed), (
        "Synthetic galaxies (Fig. 9): for each mixture component c, z ~ N(mu_c, sigma_c^2) decoded; linear scale, (0, 1).")
    if len(top_members(gamma)) >= 2:
        result = tour(model, mu, gamma)
        yield "tour", tour_figure(result), (
            f"Interpolation tour (Fig. 10): the most probable member of each component, in the order of the shortest "
            f"closed tour through latent space (length {result.length:.3g}; index order {result.identity_length:.3g}); "
            "the first and last image of each column are reconstructions of real galaxies.")
    yield "traversal", traversal_figure(traversal(model, mu)), (
        "Latent traversal (Fig. 11): each row varies one latent variable from its minimum to its maximum over the "
        "data, the others held at their mean.")
