"""The paper's figures as matplotlib Figures (object API, Agg canvas: no pyplot state, no display).

Each function takes plain arrays or DataFrames and returns a Figure; `save_figure` writes it
as a PNG atomically and returns the bytes, so a report can embed exactly what is on disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from astrovader.atomic import write_with

PHASE_COLOURS = {"alpha": "#dddddd", "anneal": "#fde2c4", "static": "#d6ecfa", "autoencoder": "#eeeeee"}
LOSS_PANELS = (
    ("total", "total loss"), ("reconstruction", "reconstruction (sum of squares)"),
    ("kl_normal", "KL to N(0, I)"), ("kl_mixture", "mixture KL"),
)


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> bytes:
    """Render `figure` to PNG bytes, write them to `path` atomically, return the bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    write_with(Path(path), lambda temporary: temporary.write_bytes(data))
    return data


# -- Fig. 2 -------------------------------------------------------------------------------
def loss_curves(metrics: pd.DataFrame) -> Figure:
    """Train (solid) and validation (dashed) losses per epoch, schedule phases shaded."""
    figure = new_figure(10, 6.5)
    axes = figure.subplots(2, 2, sharex=True).ravel()
    epochs = metrics["epoch"].to_numpy()
    for axis, (name, title) in zip(axes, LOSS_PANELS):
        _shade_phases(axis, metrics)
        for stage, style in (("train", "-"), ("validation", "--")):
            column = f"{stage}_{name}"
            if column in metrics and metrics[column].notna().any():
                axis.plot(epochs, metrics[column], style, color="black", label=stage)
        axis.set_title(title)
    for axis in axes[2:]:
        axis.set_xlabel("epoch")
    phases = [name for name in PHASE_COLOURS if name in set(metrics["phase"])]
    handles = [Line2D([], [], color="black", linestyle="-", label="train"),
               Line2D([], [], color="black", linestyle="--", label="validation")]
    handles += [Patch(color=PHASE_COLOURS[name], label=f"{name} phase") for name in phases]
    figure.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return figure


def _shade_phases(axis, metrics: pd.DataFrame) -> None:
    runs = (metrics["phase"] != metrics["phase"].shift()).cumsum()
    for _, run in metrics.groupby(runs, sort=False):
        colour = PHASE_COLOURS.get(run["phase"].iloc[0], "#eeeeee")
        axis.axvspan(run["epoch"].iloc[0] - 0.5, run["epoch"].iloc[-1] + 0.5, color=colour, linewidth=0)


# -- image grids (Figs. 3, 4, 6-8) --------------------------------------------------------
@dataclass
class ImageRow:
    """One row of a grid: a name and images (n, C, H, W); 'residual' rows use a diverging map."""

    name: str
    images: np.ndarray
    residual: bool = False


def image_grid(rows: list[ImageRow], column_labels: list[str] | None = None, title: str | None = None,
               cell: float = 1.1) -> Figure:
    """Rows of images on a common linear scale: [0, 1] for images, symmetric for residuals.
    Rows may be shorter than the longest and images may be all NaN: both leave blank cells.
    Column labels go above the first row, the title above everything.
    Each row is one strip in one axes (an axes per image makes large galleries slow to draw)."""
    columns = max([len(row.images) for row in rows] + [1])
    width = cell * columns + (1.2 if any(row.name for row in rows) else 0.2)
    height = cell * len(rows) + 0.3 + 0.3 * bool(title)
    figure = new_figure(max(width, 4.0) if title else width, height)  # room for the title
    axes = figure.subplots(len(rows), 1, squeeze=False)[:, 0]
    limit = max([float(np.abs(row.images).max()) for row in rows if row.residual and row.images.size] + [1e-6])
    for r, (axis, row) in enumerate(zip(axes, rows)):
        strip, centres = image_strip(row.images, columns, gray=row.residual)
        if row.residual:
            axis.imshow(strip, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            axis.imshow(strip, cmap="gray", vmin=0, vmax=1)
        axis.set_yticks([])
        axis.set_ylabel(row.name, rotation=0, ha="right", va="center", fontsize=8)
        labelled = r == 0 and column_labels
        axis.set_xticks(centres if labelled else [], column_labels[: len(centres)] if labelled else [], fontsize=7)
        axis.xaxis.tick_top()
        axis.tick_params(length=0)
        for spine in axis.spines.values():
            spine.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def image_strip(images: np.ndarray, columns: int, gray: bool = False, gap: int = 2) -> tuple[np.ndarray, list[float]]:
    """`columns` cells side by side, `gap` pixels apart; empty cells and gaps are NaN (drawn
    as background). Returns the strip and the centre of each image."""
    height, width = images.shape[-2:]
    bands = 1 if gray or images.shape[1] == 1 else 3
    strip = np.full((height, columns * (width + gap) - gap, bands), np.nan, dtype=np.float32)
    for c, image in enumerate(images):
        shown = np.asarray(image, dtype=np.float32).mean(0) if gray else display_image(image)
        strip[:, c * (width + gap) : c * (width + gap) + width] = shown.reshape(height, width, -1)
    if bands == 3:
        strip = np.concatenate([np.nan_to_num(strip, nan=1.0), np.isfinite(strip[..., :1]).astype(np.float32)], -1)
    centres = [c * (width + gap) + (width - 1) / 2 for c in range(len(images))]
    return (strip[..., 0] if bands == 1 else strip), centres


def display_image(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one band, (H, W, 3) clipped to [0, 1] for colour."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape[0] == 1:
        return image[0]
    return np.clip(np.moveaxis(image, 0, -1), 0, 1)


# -- Fig. 5 and the latent map -------------------------------------------------------------
def overlap_heatmap(matrix: pd.DataFrame) -> Figure:
    """Mean gamma_j (vertical) over objects whose top component is i (horizontal), with numbers."""
    values = matrix.to_numpy().T
    count = values.shape[0]
    figure = new_figure(1.0 + 0.55 * count, 0.6 + 0.5 * count)
    axis = figure.subplots()
    image = axis.imshow(np.nan_to_num(values, nan=0.0), cmap="viridis", vmin=0, vmax=1, origin="lower")
    for j in range(count):
        for i in range(values.shape[1]):
            if np.isfinite(values[j, i]):
                axis.text(i, j, f"{values[j, i]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if values[j, i] < 0.5 else "black")
    axis.set_xticks(range(values.shape[1]))
    axis.set_yticks(range(count))
    axis.set_xlabel("most probable component")
    axis.set_ylabel("component")
    figure.colorbar(image, ax=axis, label="mean gamma")
    return figure


def latent_scatter(coordinates: np.ndarray, components: np.ndarray, method: str) -> Figure:
    figure = new_figure(6.5, 5.5)
    axis = figure.subplots()
    colours = _component_colours(int(components.max()) + 1 if len(components) else 1)
    for component in np.unique(components):
        chosen = components == component
        axis.scatter(*coordinates[chosen].T, s=6, color=colours[component], label=str(component))
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(f"{method} of mu_z, coloured by most probable component")
    axis.legend(title="component", fontsize=7, markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def _component_colours(count: int) -> list:
    from matplotlib import colormaps

    table = colormaps["tab20" if count > 10 else "tab10"]
    return [table(i % table.N) for i in range(count)]


# -- choosing K and the Galaxy Zoo comparison ------------------------------------------------
def count_histogram(counts: np.ndarray, recommended: int, threshold: float) -> Figure:
    figure = new_figure(6, 3.5)
    axis = figure.subplots()
    values = np.arange(counts.min(), counts.max() + 2) - 0.5
    axis.hist(counts, bins=values, color="#4c72b0", edgecolor="white")
    axis.axvline(recommended, color="black", linestyle="--", label=f"recommended K = {recommended}")
    axis.set_xlabel(f"components with weight > {threshold:g}")
    axis.set_ylabel("fits")
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.legend()
    return figure


def vote_histogram(counts: pd.DataFrame, first: str, second: str, examples: dict[int, np.ndarray] | None = None,
                   title: str = "") -> Figure:
    """Figs. 13-14: per component, the counts of two vote classes as step lines (first: blue
    solid, second: red dashed), with an example image of each component below its bin."""
    components = list(counts.index)
    examples = examples or {}
    figure = new_figure(max(5.0, 1.2 + 1.1 * len(components)), 4.2 if examples else 3.2)
    rows = 2 if examples else 1
    grid = figure.add_gridspec(rows, len(components), height_ratios=[3, 1] if examples else [1])
    axis = figure.add_subplot(grid[0, :])
    positions = np.arange(len(components) + 1) - 0.5
    for column, colour, style in ((first, "#1f77b4", "-"), (second, "#d62728", "--")):
        heights = counts[column].to_numpy()
        axis.stairs(heights, positions, color=colour, linestyle=style, linewidth=2, label=column.replace("_", " "))
    axis.set_xticks(range(len(components)), [str(component) for component in components])
    axis.set_xlim(positions[0], positions[-1])
    axis.set_xlabel("component")
    axis.set_ylabel("galaxies")
    axis.set_title(title)
    axis.legend()
    for i, component in enumerate(components):
        if component in examples:
            thumbnail = figure.add_subplot(grid[1, i])
            thumbnail.imshow(display_image(examples[component]), cmap="gray", vmin=0, vmax=1)
            thumbnail.set_axis_off()
    return figure
