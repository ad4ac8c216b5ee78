"""Generation (paper section 5.3, Figs. 9-12): synthetic galaxies, the interpolation tour through
the components, latent traversals, deblending by interpolation, and interpolation between two
galaxies.

Every latent vector is decoded by `model.inference.decode`, in blocks of exactly BLOCK rows (the
last zero-padded) and clipped to [0, 1]; synthetic block b draws its components and noise from
its own generator seeded by (seed, b). So a synthetic image depends only on the seed, the
settings and its index: never on the chunk size, on how many images are made, or on what else
is generated.

All functions take a loaded model (`model.io.load_model`), and model-ready pixels (N, C, H, W)
(uint8 or floats in [0, 1]) or their embeddings mu (N, J) and gamma (N, K) from
`model.inference.model_outputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.spatial.distance import cdist

from astrovader.analysis.figures import ImageRow, image_grid, save_figure
from astrovader.data.loader import seed_for, to_float
from astrovader.errors import AstroVaDErError, InputError
from astrovader.io import atomic_path, read_json, write_json_atomic, write_with
from astrovader.model.inference import BLOCK, decode, image_shape, model_outputs
from astrovader.model.vade import VaDE

DEFAULT_CHUNK = 1024
GRID_IMAGES = 36  # synthetic images shown per component (a 6 x 6 grid)
# The tour solver works on integer costs: latent distances scaled so the longest is this.
COST_RESOLUTION = 10**6
SOLVER_DETERMINISTIC_SECONDS = 60.0


# -- sampling (Fig. 9) ----------------------------------------------------------------------------
def component_subset(model: VaDE, components: int | Sequence[int] | None) -> list[int]:
    """The components to sample from, sorted and checked: all of them when None."""
    count = model.prior.n_components
    if components is None:
        return list(range(count))
    chosen = sorted({int(c) for c in np.atleast_1d(components)})
    outside = [c for c in chosen if not 0 <= c < count]
    if outside or not chosen:
        shown = outside[0] if outside else "(none)"
        raise AstroVaDErError(f"component {shown}: the model has components 0..{count - 1}")
    return chosen


@torch.no_grad()
def sample_latents(model: VaDE, n: int, components: int | Sequence[int] | None = None, seed: int = 0,
                   variance_scale: float = 1.0, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(components (n,), z (n, J)) of synthetic images start..start+n-1: c ~ Cat(pi) renormalised
    over `components` (one, several, or all when None), z ~ N(mu_c, variance_scale * sigma^2_c)."""
    subset = torch.tensor(component_subset(model, components))
    _require(n >= 0, f"n = {n}: must be >= 0")
    _require(variance_scale >= 0, f"variance_scale = {variance_scale}: must be >= 0")
    first, last = start // BLOCK, -(-(start + n) // BLOCK)
    prior = model.prior
    drawn = [_latent_block(prior, block, seed, subset, variance_scale) for block in range(first, last)]
    if not drawn:
        return np.zeros(0, np.int64), np.zeros((0, prior.means.shape[1]), np.float32)
    offset = start - first * BLOCK
    chosen = torch.cat([c for c, _ in drawn])[offset : offset + n]
    z = torch.cat([z for _, z in drawn])[offset : offset + n]
    return chosen.cpu().numpy().astype(np.int64), z.cpu().numpy()


def _latent_block(prior, block: int, seed: int, subset: torch.Tensor, variance_scale: float):
    generator = torch.Generator().manual_seed(seed_for(seed, block))
    weights = prior.log_weights().exp().cpu()[subset]
    picks = torch.multinomial(weights, BLOCK, replacement=True, generator=generator)
    return prior.sample(BLOCK, generator, subset[picks], variance_scale)


def iter_samples(model: VaDE, n: int, components: int | Sequence[int] | None = None, seed: int = 0,
                 variance_scale: float = 1.0, chunk: int = DEFAULT_CHUNK
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(components, z, images) for consecutive chunks of the n synthetic images. `chunk` (rounded
    up to whole blocks) sets the memory used, never the images."""
    _require(chunk >= 1, f"chunk = {chunk}: must be >= 1")
    step = -(-chunk // BLOCK) * BLOCK
    for start in range(0, n, step):
        chosen, z = sample_latents(model, min(step, n - start), components, seed, variance_scale, start)
        yield chosen, z, decode(model, z)


def sample_images(model: VaDE, n: int, components: int | Sequence[int] | None = None, seed: int = 0,
                  variance_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, C, H, W), components (n,), z (n, J)): Fig. 9's synthetic galaxies in memory."""
    chosen, z = sample_latents(model, n, components, seed, variance_scale)
    return decode(model, z), chosen, z


def write_samples(model: VaDE, out: str | Path, n: int, components: int | Sequence[int] | None = None,
                  seed: int = 0, variance_scale: float = 1.0, image_format: str = "npy",
                  table_format: str = "parquet", chunk: int = DEFAULT_CHUNK,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Stream n synthetic images to out/samples.{npy,fits} and their (index, component, z_..)
    to out/samples.{parquet,csv}, each written chunk by chunk and renamed into place at the end;
    then one PNG grid per component drawn (samples_component_CC.png). Returns a summary."""
    _require(n >= 1, f"n = {n}: must be >= 1")
    _require(image_format in ("npy", "fits"), f"image format {image_format!r}: choose npy or fits")
    _require(table_format in ("parquet", "csv"), f"table format {table_format!r}: choose parquet or csv")
    subset = component_subset(model, components)
    out = Path(out)
    settings = {"n": n, "components": subset, "seed": seed, "variance_scale": variance_scale}
    shown: dict[int, list[np.ndarray]] = {}
    counts = np.zeros(model.prior.n_components, np.int64)
    done = 0
    with ExitStack() as stack:
        write_images = _image_writer(stack, out / f"samples.{image_format}", (n, *image_shape(model)), settings)
        write_table = _table_writer(stack, out / f"samples.{table_format}")
        for chosen, z, images in iter_samples(model, n, subset, seed, variance_scale, chunk):
            write_images(done, images)
            write_table(done, chosen, z)
            counts += np.bincount(chosen, minlength=len(counts))
            for component in np.unique(chosen):
                kept = shown.setdefault(int(component), [])
                kept.extend(images[chosen == component][: GRID_IMAGES - len(kept)])
            done += len(images)
            if progress is not None:
                progress(done, n)
    grids = {}
    for component, images in sorted(shown.items()):
        grids[component] = f"samples_component_{component:02d}.png"
        figure = samples_figure(np.stack(images), title=f"component {component}: synthetic galaxies")
        save_figure(figure, out / grids[component])
    return {
        **settings, "images": f"samples.{image_format}", "table": f"samples.{table_format}",
        "grids": grids, "per_component": counts.tolist(), "precision": model.precision,
    }


def _image_writer(stack: ExitStack, path: Path, shape: tuple[int, ...], settings: dict):
    temporary = stack.enter_context(atomic_path(path))
    if path.suffix == ".npy":
        array = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.float32, shape=shape)
        stack.callback(array.flush)

        def write(start: int, images: np.ndarray) -> None:
            array[start : start + len(images)] = images

        return write
    from astropy.io import fits

    # A gray cube (N, H, W); colour keeps its band axis (N, 3, H, W). FITS lists axes fastest first.
    cube = shape if shape[1] > 1 else (shape[0], *shape[2:])
    header = fits.Header(
        [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", len(cube))]
        + [(f"NAXIS{axis + 1}", size) for axis, size in enumerate(reversed(cube))]
        + [("EXTEND", True), ("ORIGIN", "astrovader"), ("SEED", settings["seed"], "random seed"),
           ("VARSCALE", settings["variance_scale"], "prior variance scale"),
           ("COMMENT", "synthetic galaxies; component and z per image in the samples table")]
    )
    stream = fits.StreamingHDU(str(temporary), header)
    stack.callback(stream.close)

    def write(start: int, images: np.ndarray) -> None:
        stream.write(np.ascontiguousarray(images.reshape(len(images), *cube[1:]), dtype=np.float32))

    return write


def _table_writer(stack: ExitStack, path: Path):
    import pandas as pd

    temporary = stack.enter_context(atomic_path(path))
    state: dict = {}

    def frame(start: int, components: np.ndarray, z: np.ndarray) -> pd.DataFrame:
        width = max(2, len(str(z.shape[1] - 1)))
        columns = {"index": np.arange(start, start + len(z), dtype=np.int64), "component": components}
        columns.update({f"z_{j:0{width}d}": z[:, j] for j in range(z.shape[1])})
        return pd.DataFrame(columns)

    if path.suffix == ".csv":
        handle = stack.enter_context(open(temporary, "w", newline=""))

        def write(start: int, components: np.ndarray, z: np.ndarray) -> None:
            frame(start, components, z).to_csv(handle, header=start == 0, index=False)

        return write
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(start: int, components: np.ndarray, z: np.ndarray) -> None:
        table = pa.Table.from_pandas(frame(start, components, z), preserve_index=False)
        if "writer" not in state:
            state["writer"] = pq.ParquetWriter(str(temporary), table.schema)
            stack.callback(state["writer"].close)
        state["writer"].write_table(table)

    return write


# -- interpolation (Figs. 10, 12) ----------------------------------------------------------------
def interpolate(model: VaDE, z_a: np.ndarray, z_b: np.ndarray, steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(z (steps, J), images (steps, C, H, W)) along the straight line from z_a to z_b, both ends
    included: with z_a, z_b = mu of two galaxies, the ends are their reconstructions."""
    z = interpolate_latents(z_a, z_b, steps)
    return z, decode(model, z)


def most_probable_members(gamma: np.ndarray) -> dict[int, int]:
    """{component: position of its most probable member}: among the objects whose top component
    is c, the one with the highest gamma_c. Components that are nobody's top are left out."""
    from astrovader.analysis.clusters import most_probable_members as ranked  # here: it imports scikit-learn

    return {component: int(rows[0]) for component, rows in ranked(gamma).items() if len(rows)}


def tour_length(points: np.ndarray, order: Sequence[int], closed: bool = True) -> float:
    """Euclidean length of the path through points[order] (back to the start when closed)."""
    path = np.asarray(points, np.float64)[list(order) + list(order[:1] if closed else [])]
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def shortest_tour(points: np.ndarray, closed: bool = True) -> tuple[np.ndarray, bool]:
    """(order, proven optimal) of the shortest tour through the points (a closed cycle, or an
    open path when closed=False), solved exactly by OR-Tools CP-SAT's circuit constraint
    (single-threaded with a fixed seed and a deterministic time limit: same points, same order)."""
    from ortools.sat.python import cp_model

    count = len(points)
    if count <= 3 - (not closed):  # every order is equally short
        return np.arange(count), True
    # An open path is a closed tour through one extra node at distance 0 from all the others.
    nodes = count + (not closed)
    costs = np.zeros((nodes, nodes))
    costs[:count, :count] = cdist(points, points)
    costs = np.rint(costs * COST_RESOLUTION / max(costs.max(), np.finfo(float).tiny)).astype(np.int64)
    problem = cp_model.CpModel()
    arcs = {(i, j): problem.new_bool_var(f"{i}->{j}") for i in range(nodes) for j in range(nodes) if i != j}
    problem.add_circuit([(i, j, arc) for (i, j), arc in arcs.items()])
    problem.minimize(sum(int(costs[i, j]) * arc for (i, j), arc in arcs.items()))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_deterministic_time = SOLVER_DETERMINISTIC_SECONDS
    status = solver.solve(problem)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise AstroVaDErError(f"tour: the solver found no tour through {count} points ({solver.status_name(status)})")
    successor = {i: j for (i, j), arc in arcs.items() if solver.boolean_value(arc)}
    node, order = nodes - 1, []
    for _ in range(nodes):
        node = successor[node]
        order.append(node)
    order = [node for node in order if node < count]
    if closed:  # start the cycle at the first point
        order = order[order.index(0):] + order[: order.index(0)]
    return np.array(order), status == cp_model.OPTIMAL


@dataclass
class Tour:
    """Fig. 10: legs between the most probable members of the components, in tour order."""

    components: np.ndarray  # (m,) components in the order visited
    members: np.ndarray  # (m,) position of each one's most probable member in the pixels given
    length: float  # latent-space length of the tour
    identity_length: float  # of visiting the same components in index order
    optimal: bool  # proven shortest by the solver
    closed: bool
    z: np.ndarray = field(repr=False)  # (legs, steps, J)
    images: np.ndarray = field(repr=False)  # (legs, steps, C, H, W); each leg starts and ends at a reconstruction


def tour(model: VaDE, mu: np.ndarray, gamma: np.ndarray, steps: int = 8, closed: bool = True) -> Tour:
    """The most probable member of each component (from the embeddings mu (N, J) and gamma
    (N, K) of `model.inference.model_outputs`), ordered by the shortest (travelling-salesperson) tour
    through their mu, and the images decoded along each leg."""
    members = most_probable_members(gamma)
    if len(members) < 2:
        raise AstroVaDErError(f"tour: the galaxies given are the top members of {len(members)} component(s); need 2 or more")
    components = np.array(list(members))
    points = np.asarray(mu)[[members[c] for c in components]]
    order, optimal = shortest_tour(points, closed)
    stops = points[order]
    ends = list(zip(stops, np.roll(stops, -1, axis=0)))[: len(stops) if closed else len(stops) - 1]
    z = np.stack([interpolate_latents(a, b, steps) for a, b in ends])
    images = decode(model, z.reshape(-1, z.shape[-1])).reshape(*z.shape[:2], *image_shape(model))
    return Tour(
        components=components[order], members=np.array([members[c] for c in components[order]]),
        length=tour_length(points, order, closed), identity_length=tour_length(points, range(len(points)), closed),
        optimal=optimal, closed=closed, z=z, images=images,
    )


def interpolate_latents(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """(steps, J) latent vectors from z_a to z_b, both included."""
    _require(steps >= 2, f"steps = {steps}: must be at least 2")
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1 - weights) * np.asarray(z_a, np.float64) + weights * np.asarray(z_b, np.float64)).astype(np.float32)


# -- latent traversal (Fig. 11) ------------------------------------------------------------------
@dataclass
class Traversal:
    values: np.ndarray  # (J, steps): latent j from its minimum to its maximum over the data
    z: np.ndarray = field(repr=False)  # (J, steps, J): row j varies latent j, the others at their mean
    images: np.ndarray = field(repr=False)  # (J, steps, C, H, W)


def traversal(model: VaDE, mu: np.ndarray, steps: int = 9) -> Traversal:
    """Each latent variable from its minimum to its maximum over the encoded data `mu` (N, J),
    the others held at their mean: one row of `steps` images per variable."""
    _require(steps >= 2, f"steps = {steps}: must be at least 2")
    mu = np.asarray(mu, np.float64)
    _require(mu.ndim == 2 and len(mu) >= 1, f"mu of shape {mu.shape}: expected (N >= 1, J) latent vectors")
    latent = mu.shape[1]
    values = np.linspace(mu.min(axis=0), mu.max(axis=0), steps, axis=1)
    z = np.broadcast_to(mu.mean(axis=0), (latent, steps, latent)).copy()
    z[np.arange(latent), :, np.arange(latent)] = values
    z = z.astype(np.float32)
    images = decode(model, z.reshape(-1, latent)).reshape(latent, steps, *image_shape(model))
    return Traversal(values=values.astype(np.float32), z=z, images=images)


# -- deblending (Fig. 12) ------------------------------------------------------------------------
@dataclass
class Deblend:
    target: int  # position of the galaxy to deblend in the pixels given
    partner: int  # position of the most similar member of the clean component
    mse: float  # mean squared pixel difference between the two images
    clean_component: int
    z: np.ndarray = field(repr=False)  # (steps, J) from the target's mu to the partner's
    images: np.ndarray = field(repr=False)  # (steps, C, H, W); the ends are the two reconstructions


def deblend(model: VaDE, pixels, target_index: int, clean_component: int, steps: int = 8,
            outputs: dict | None = None) -> Deblend:
    """Interpolate from a galaxy (typically in a component with companions) to the member of the
    'clean' component whose image is closest to it (lowest MSE)."""
    count = len(pixels)
    _require(0 <= target_index < count, f"target {target_index}: expected a position in 0..{count - 1}")
    component_subset(model, clean_component)
    outputs = outputs if outputs is not None else model_outputs(model, pixels, reconstruct=False)
    members = np.flatnonzero(outputs["gamma"].argmax(axis=1) == clean_component)
    members = members[members != target_index]
    if not len(members):
        raise AstroVaDErError(f"clean component {clean_component}: none of the {count} galaxies given is a member")
    errors = image_mse(pixels, target_index, members)
    best = int(errors.argmin())
    partner = int(members[best])
    z, images = interpolate(model, outputs["mu"][target_index], outputs["mu"][partner], steps)
    return Deblend(target_index, partner, float(errors[best]), clean_component, z, images)


def image_mse(pixels, target_index: int, candidates: np.ndarray, block: int = 1024) -> np.ndarray:
    """Mean squared pixel difference between image `target_index` and each candidate (in [0, 1] units)."""
    target = to_float(np.asarray(pixels[target_index : target_index + 1]))
    errors = [
        (to_float(np.asarray(pixels[candidates[start : start + block]])) - target).square().flatten(1).mean(1).numpy()
        for start in range(0, len(candidates), block)
    ]
    return np.concatenate(errors)


# -- figures (analysis.figures.image_grid: one row of images per axes) -----------------------------
def samples_figure(images: np.ndarray, title: str | None = None, columns: int | None = None) -> Figure:
    """Fig. 9 panel: synthetic images (N, C, H, W) of one component in a square-ish grid."""
    columns = columns or max(1, int(np.ceil(np.sqrt(len(images)))))
    rows = [ImageRow("", images[start : start + columns]) for start in range(0, len(images), columns)]
    return image_grid(rows, title=title)


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
    if len(most_probable_members(gamma)) >= 2:
        result = tour(model, mu, gamma)
        yield "tour", tour_figure(result), (
            f"Interpolation tour (Fig. 10): the most probable member of each component, in the order of the shortest "
            f"closed tour through latent space (length {result.length:.3g}; index order {result.identity_length:.3g}); "
            "the first and last image of each column are reconstructions of real galaxies.")
    yield "traversal", traversal_figure(traversal(model, mu)), (
        "Latent traversal (Fig. 11): each row varies one latent variable from its minimum to its maximum over the "
        "data, the others held at their mean.")


def save_arrays(path: Path, **arrays: np.ndarray) -> Path:
    """An .npz written atomically (through a handle: np.savez would rename a bare path)."""
    def writer(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    return write_with(Path(path), writer)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AstroVaDErError(message)


# -- the `astrovader generate` command ------------------------------------------------------------
@dataclass
class GenerateRequest:
    """What `astrovader generate` makes; see `run_generate`."""

    n: int = 0  # synthetic images (Fig. 9); 0: none
    components: list[int] | None = None  # sample only from these (None: c ~ Cat(pi))
    seed: int = 0
    variance_scale: float = 1.0
    image_format: str = "npy"
    table_format: str = "parquet"
    chunk: int = DEFAULT_CHUNK
    data: Path | None = None  # prepared cache of real galaxies (None: the run's own)
    split: str = "test"
    tour: bool = False  # Fig. 10
    closed_tour: bool = True
    traversal: bool = False  # Fig. 11
    steps: int = 8
    deblend: str | None = None  # Fig. 12: id of the galaxy to deblend
    clean_component: int | None = None
    pair: tuple[str, str] | None = None  # ids of two galaxies to interpolate between

    @property
    def needs_galaxies(self) -> bool:
        return self.tour or self.traversal or self.deblend is not None or self.pair is not None


def run_generate(run_dir: str | Path, out: str | Path, request: GenerateRequest,
                 progress: Callable[[int, int], None] | None = None) -> str:
    """Make every product the request asks for in folder `out` (PNG + arrays, and generate.json
    describing them, updated, not replaced, by later runs); returns a one-line summary."""
    from astrovader.model.io import load_model

    if request.n == 0 and not request.needs_galaxies:
        raise AstroVaDErError("generate: nothing to make; give --n, --tour, --traversal, --deblend or --interpolate")
    if (request.deblend is None) != (request.clean_component is None):
        raise AstroVaDErError("generate: --deblend ID and --clean-component C go together")
    run_dir, out = Path(run_dir), Path(out)
    model, _ = load_model(run_dir)
    manifest: dict = {"run": str(run_dir.resolve()), "precision": model.precision}
    done: list[str] = []
    try:
        if request.n:
            manifest["samples"] = write_samples(
                model, out, request.n, request.components, request.seed, request.variance_scale,
                request.image_format, request.table_format, request.chunk, progress,
            )
            done.append(f"{request.n} synthetic images")
        if request.needs_galaxies:
            source, ids, pixels = load_galaxies(run_dir, request.data, request.split, model)
            manifest["galaxies"] = {"cache": str(source), "split": request.split, "count": len(ids)}
            outputs = model_outputs(model, pixels, reconstruct=False)
            done += _galaxy_products(model, out, request, ids, pixels, outputs, manifest)
    finally:  # describe whatever was made, even when a later product fails
        if done:
            path = out / "generate.json"
            previous = read_json(path) if path.exists() else {}
            write_json_atomic(path, {**previous, **manifest})
    return f"{'; '.join(done)} -> {out}"


def _galaxy_products(model, out: Path, request: GenerateRequest, ids, pixels, outputs, manifest) -> list[str]:
    done = []
    if request.tour:
        result = tour(model, outputs["mu"], outputs["gamma"], request.steps, request.closed_tour)
        save_figure(tour_figure(result), out / "tour.png")
        save_arrays(out / "tour.npz", images=result.images, z=result.z, components=result.components,
                    ids=ids[result.members])
        manifest["tour"] = {
            "components": result.components.tolist(), "ids": ids[result.members].tolist(), "closed": result.closed,
            "length": result.length, "identity_length": result.identity_length, "optimal": result.optimal,
        }
        done.append(f"tour of {len(result.components)} components (length {result.length:.3g}, "
                    f"index order {result.identity_length:.3g})")
    if request.traversal:
        result = traversal(model, outputs["mu"], request.steps)
        save_figure(traversal_figure(result), out / "traversal.png")
        save_arrays(out / "traversal.npz", images=result.images, z=result.z, values=result.values)
        manifest["traversal"] = {"latents": len(result.values), "steps": request.steps}
        done.append(f"traversal of {len(result.values)} latents")
    if request.deblend is not None:
        target = galaxy_position(ids, request.deblend, "--deblend")
        result = deblend(model, pixels, target, request.clean_component, request.steps, outputs)
        partner = ids[result.partner]
        save_figure(strip_figure(result.images, str(ids[target]), str(partner),
                                 f"deblending {ids[target]} towards component {result.clean_component}"), out / "deblend.png")
        save_arrays(out / "deblend.npz", images=result.images, z=result.z, ids=ids[[target, result.partner]])
        manifest["deblend"] = {"target": str(ids[target]), "partner": str(partner),
                               "clean_component": result.clean_component, "mse": result.mse}
        done.append(f"deblend {ids[target]} towards {partner} (MSE {result.mse:.3g})")
    if request.pair is not None:
        first, second = (galaxy_position(ids, identifier, "--interpolate") for identifier in request.pair)
        z, images = interpolate(model, outputs["mu"][first], outputs["mu"][second], request.steps)
        save_figure(strip_figure(images, *request.pair), out / "interpolation.png")
        save_arrays(out / "interpolation.npz", images=images, z=z, ids=ids[[first, second]])
        manifest["interpolation"] = {"ids": list(request.pair), "steps": request.steps}
        done.append(f"interpolation {request.pair[0]} → {request.pair[1]}")
    return done


def load_galaxies(run_dir: Path, data: Path | None, split: str, model: VaDE) -> tuple[Path, np.ndarray, np.ndarray]:
    """(cache folder, ids, uint8 pixels) of one split of a prepared cache: `data`, or the cache
    the run was trained on."""
    from astrovader.data.cache import Cache
    from astrovader.data.loader import read_rows

    if data is None:
        recorded = read_json(run_dir / "run.json")["data"] if (run_dir / "run.json").exists() else {}
        if "cache" not in recorded:
            raise InputError(f"{run_dir}: records no prepared cache of its data; give --data CACHE")
        data = Path(recorded["cache"])
    if not Cache.is_cache(data):
        raise InputError(f"--data {data}: not a prepared cache; run `astrovader prepare` with the model's settings")
    cache = Cache(data)
    cache.check_matches(model.config.data)
    rows = cache.split(split)
    if rows.empty:
        raise InputError(f"--split {split}: {data} holds no galaxies in this split")
    return Path(data), rows["id_str"].to_numpy(dtype=str), read_rows(cache.images, rows["row"].to_numpy())


def galaxy_position(ids: np.ndarray, identifier: str, option: str) -> int:
    found = np.flatnonzero(ids == str(identifier))
    if not len(found):
        raise InputError(f"{option} {identifier}: no galaxy with this id among the {len(ids)} given (check --data/--split)")
    return int(found[0])
