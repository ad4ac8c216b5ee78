"""The one inference kernel: every path that runs a trained model on images or latent vectors
(the estimator, predict, generate, the report, the explorer, the benchmarks) goes through here.

gamma comes from mu_z (never a sampled z) with the eq. 17 scaling applied per sample. The
network always runs on blocks of exactly BLOCK rows (the last one zero-padded), so the kernels
and their summation order are the same for a galaxy whatever batch, order or run it came in:
its outputs are bit-identical. Decoded images are clipped to [0, 1], the range of the data (the
ReLU output can overshoot).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from astrovader.data.loader import to_float
from astrovader.model.losses import reconstruction_loss
from astrovader.model.vade import VaDE

BLOCK = 64


@torch.no_grad()
def model_outputs(model: VaDE, pixels: np.ndarray | torch.Tensor, reconstruct: bool = True) -> dict[str, np.ndarray]:
    """Per-image outputs for pixels (N, C, H, W) (uint8 or floats in [0, 1], array or tensor):
    mu, logvar (N, J); gamma (eq. 17-scaled, softmaxed) and posterior (unscaled Bayes p(c|mu))
    (N, K); log_likelihood under the mixture (N,); mse, the mean squared reconstruction error
    per pixel of the decoded mu (N,; the training loss's, before clipping)."""
    images = to_float(pixels)
    device = next(model.parameters()).device
    parts: dict[str, list[np.ndarray]] = {}
    for padded, count in padded_blocks(images):
        outputs = _block_outputs(model, padded.to(device), reconstruct)
        for name, value in outputs.items():
            parts.setdefault(name, []).append(value[:count].cpu().numpy())
    if not parts:
        return _empty(model, reconstruct)
    return {name: np.concatenate(values) for name, values in parts.items()}


@torch.no_grad()
def decode(model: VaDE, z: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] for latent vectors (N, J), decoded in fixed blocks."""
    z = torch.as_tensor(np.asarray(z, dtype=np.float32))
    device = next(model.parameters()).device
    parts = [model.decode(padded.to(device))[:count].clamp_(0, 1).cpu().numpy() for padded, count in padded_blocks(z)]
    return np.concatenate(parts) if parts else np.zeros((0, *model.config.data.input_shape), np.float32)


def padded_blocks(rows: torch.Tensor) -> Iterator[tuple[torch.Tensor, int]]:
    """(exactly BLOCK rows in fp32, zero-padded at the end; how many are real) for each block
    of `rows`: the fixed shape that makes every row's result independent of its batch."""
    for start in range(0, len(rows), BLOCK):
        block = rows[start : start + BLOCK]
        padded = torch.zeros((BLOCK, *rows.shape[1:]), dtype=torch.float32)
        padded[: len(block)] = block
        yield padded, len(block)


def _block_outputs(model: VaDE, x: torch.Tensor, reconstruct: bool) -> dict[str, torch.Tensor]:
    mu, logvar = model.encode(x)
    prior = model.prior
    outputs = {
        "mu": mu,
        "logvar": logvar,
        "gamma": prior.responsibilities(mu),
        "posterior": prior.posterior(mu),
        "log_likelihood": prior.log_density(mu),
    }
    if reconstruct:
        pixels = x[0].numel()
        outputs["mse"] = reconstruction_loss(model.decode(mu), x, "mse") / pixels
    return outputs


def _empty(model: VaDE, reconstruct: bool) -> dict[str, np.ndarray]:
    latent, components = model.prior.means.shape[1], model.prior.n_components
    empty = {
        "mu": np.zeros((0, latent), np.float32), "logvar": np.zeros((0, latent), np.float32),
        "gamma": np.zeros((0, components), np.float32), "posterior": np.zeros((0, components), np.float32),
        "log_likelihood": np.zeros(0, np.float32),
    }
    if reconstruct:
        empty["mse"] = np.zeros(0, np.float32)
    return empty
