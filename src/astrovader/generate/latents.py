"""Latent vectors and what they decode to (Figs. 9, 11, 12): synthetic galaxies sampled from the
mixture, the line between two embeddings, the traversal of each latent, and deblending by
interpolation towards the most similar member of a clean component."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from astrovader.data.loader import seed_for, to_float
from astrovader.errors import AstroVaDErError
from astrovader.model.inference import BLOCK, decode, model_outputs
from astrovader.model.vade import VaDE


DEFAULT_CHUNK = 1024


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
    require(n >= 0, f"n = {n}: must be >= 0")
    require(variance_scale >= 0, f"variance_scale = {variance_scale}: must be >= 0")
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
    require(chunk >= 1, f"chunk = {chunk}: must be >= 1")
    step = -(-chunk // BLOCK) * BLOCK
    for start in range(0, n, step):
        chosen, z = sample_latents(model, min(step, n - start), components, seed, variance_scale, start)
        yield chosen, z, decode(model, z)


def sample_images(model: VaDE, n: int, components: int | Sequence[int] | None = None, seed: int = 0,
                  variance_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, C, H, W), components (n,), z (n, J)): Fig. 9's synthetic galaxies in memory."""
    chosen, z = sample_latents(model, n, components, seed, variance_scale)
    return decode(model, z), chosen, z


def interpolate(model: VaDE, z_a: np.ndarray, z_b: np.ndarray, steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(z (steps, J), images (steps, C, H, W)) along the straight line from z_a to z_b, both ends
    included: with z_a, z_b = mu of two galaxies, the ends are their reconstructions."""
    z = interpolate_latents(z_a, z_b, steps)
    return z, decode(model, z)


def interpolate_latents(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """(steps, J) latent vectors from z_a to z_b, both included."""
    require(steps >= 2, f"steps = {steps}: must be at least 2")
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1 - weights) * np.asarray(z_a, np.float64) + weights * np.asarray(z_b, np.float64)).astype(np.float32)


@dataclass
class Traversal:
    values: np.ndarray  # (J, steps): latent j from its minimum to its maximum over the data
    z: np.ndarray = field(repr=False)  # (J, steps, J): row j varies latent j, the others at their mean
    images: np.ndarray = field(repr=False)  # (J, steps, C, H, W)


def traversal(model: VaDE, mu: np.ndarray, steps: int = 9) -> Traversal:
    """Each latent variable from its minimum to its maximum over the encoded data `mu` (N, J),
    the others held at their mean: one row of `steps` images per variable."""
    require(steps >= 2, f"steps = {steps}: must be at least 2")
    mu = np.asarray(mu, np.float64)
    require(mu.ndim == 2 and len(mu) >= 1, f"mu of shape {mu.shape}: expected (N >= 1, J) latent vectors")
    latent = mu.shape[1]
    values = np.linspace(mu.min(axis=0), mu.max(axis=0), steps, axis=1)
    z = np.broadcast_to(mu.mean(axis=0), (latent, steps, latent)).copy()
    z[np.arange(latent), :, np.arange(latent)] = values
    z = z.astype(np.float32)
    images = decode(model, z.reshape(-1, latent)).reshape(latent, steps, *model.config.data.input_shape)
    return Traversal(values=values.astype(np.float32), z=z, images=images)


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
    require(0 <= target_index < count, f"target {target_index}: expected a position in 0..{count - 1}")
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


def require(condition: bool, message: str) -> None:
    if not condition:
        raise AstroVaDErError(message)
