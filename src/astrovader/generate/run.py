"""The `astrovader generate` command: what a request asks for, made in one folder and described
in its generate.json; the galaxies it starts from (one split of a prepared cache)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrovader.analysis.figures import save_figure
from astrovader.atomic import read_json, write_json_atomic
from astrovader.errors import AstroVaDErError, InputError
from astrovader.generate.figures import strip_figure, tour_figure, traversal_figure
from astrovader.generate.latents import DEFAULT_CHUNK, deblend, interpolate, traversal
from astrovader.generate.tour import tour
from astrovader.generate.writers import save_arrays, write_samples
from astrovader.model.inference import model_outputs
from astrovader.model.vade import VaDE

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
    from astrovader.runs import RunFolder

    if data is None:
        data = RunFolder(run_dir).recorded_cache()
        if data is None:
            raise InputError(f"{run_dir}: records no prepared cache of its data; give --data CACHE")
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
