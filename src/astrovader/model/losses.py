"""The loss terms, one function per equation of the paper. All return per-sample values (N,)
in fp32; the caller weights them by the s3VDC schedule and averages over the batch.

The constant J log 2pi that the paper (and the public code) leaves inside the KL is not part of
any value here: eq. 11 below is the exact KL(q(z, c | x) || p(z, c)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astrovader.data.loader import evenly_spread, to_float
from astrovader.model.mixture import MixturePrior


# The noise floor of the Gaussian likelihood: the rounding noise of the uint8 cache (1/255 / sqrt 12).
NOISE_FLOOR = 1.0 / (255.0 * 12**0.5)
BORDER = 4  # pixels: the frame whose spread measures an image's noise (sky, away from the galaxy)
SURVEY_ROWS = 10_000  # images whose median border noise is the survey's (evenly spread over the training split)


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, kind: str = "mse",
                        aperture: float | None = None, sigma: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 6: per-image sum of squared errors (MSE x D); binary cross-entropy x D; or the
    Gaussian negative log-likelihood, sum of (x - x_hat)^2 / (2 sigma^2) without its constant,
    with the noise `sigma` given (one for the survey) or else each image's own (`border_noise`),
    so that the model is not paid to reproduce noise. With an `aperture` (the sigma of a
    Gaussian centred on the image, as a fraction of its side) each pixel's term is weighted by
    it: the central galaxy counts fully, field stars and neighbours far out less."""
    if kind == "gaussian" and sigma is None:
        sigma = border_noise(target)
    shape = target.shape[1:]
    reconstruction, target = reconstruction.float().flatten(1), target.float().flatten(1)
    if kind == "bce":
        per_pixel = F.binary_cross_entropy(reconstruction.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    else:
        per_pixel = (reconstruction - target).square()
    if aperture is not None:
        per_pixel = per_pixel * aperture_weights(tuple(shape), aperture, target.device)
    summed = per_pixel.sum(1)
    return summed / (2.0 * sigma.square()) if kind == "gaussian" else summed


def aperture_weights(shape: tuple[int, ...], aperture: float, device: torch.device) -> torch.Tensor:
    """exp(-r^2 / 2 (aperture x side)^2) for every value of an image of `shape` ((C, H, W)), flat,
    r from the image's centre."""
    height, width = shape[-2:]
    y = torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2
    x = torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2
    radius_squared = y[:, None].square() + x[None, :].square()
    weights = torch.exp(-0.5 * radius_squared / (aperture * min(height, width)) ** 2)
    return weights.expand(shape).flatten()


def aperture_pixel_weights(shape: tuple[int, ...], aperture: float | None, device: torch.device) -> torch.Tensor:
    """The square root of `aperture_weights` (ones without an aperture), flat: pixels multiplied
    by it weigh in squared distances (principal components, k-means) as in the aperture-weighted
    reconstruction term."""
    if aperture is None:
        return torch.ones(int(np.prod(shape)), device=device)
    return aperture_weights(shape, aperture, device).sqrt()


@torch.no_grad()
def border_noise(images: torch.Tensor) -> torch.Tensor:
    """Each image's noise sigma (N,) from images (N, C, H, W) (`border_statistics`), floored at
    the cache's rounding noise."""
    return border_statistics(images)[1].clamp_min(NOISE_FLOOR)


@torch.no_grad()
def border_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's sky and noise sigma (N,), (N,) from images (N, ..., H, W): the median and
    1.4826 x the median absolute deviation of the pixels in a BORDER-pixel frame (robust to a
    companion crossing it)."""
    height, width = images.shape[-2:]
    frame = torch.ones((height, width), dtype=torch.bool, device=images.device)
    frame[BORDER:-BORDER, BORDER:-BORDER] = False
    pixels = images.float()[..., frame].flatten(1)
    sky = pixels.median(dim=1, keepdim=True).values
    return sky.squeeze(1), 1.4826 * (pixels - sky).abs().median(dim=1).values


def survey_noise(images: np.ndarray, rows: np.ndarray, batch: int = 1024) -> float:
    """One noise sigma for a survey: the median of `border_noise` over the images of `rows`
    (uint8 cache or float array, (N, C, H, W)), at most SURVEY_ROWS of them, evenly spread."""
    rows = np.sort(evenly_spread(rows, SURVEY_ROWS))
    sigmas = [border_noise(to_float(images[rows[start:start + batch]])) for start in range(0, len(rows), batch)]
    return float(torch.cat(sigmas).quantile(0.5))


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Eq. 7: KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)."""
    return -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).sum(-1)


def kl_mixture(mu: torch.Tensor, logvar: torch.Tensor, log_gamma: torch.Tensor, prior: MixturePrior) -> torch.Tensor:
    """Eq. 11: the VaDE KL between q(z, c | x) = N(mu, sigma^2) gamma_c and p(z, c), with
    gamma from eqs. 12-13 and 17 (`log_gamma`, (N, K)). Without the constant J log 2pi.

    -1/2 sum_j (1 + log sigma_zj^2) - sum_c gamma_c (log pi_c - log gamma_c)
    + 1/2 sum_c gamma_c (log |Sigma_c| + (mu_z - mu_c)^T Sigma_c^-1 (mu_z - mu_c) + tr(Sigma_c^-1 diag sigma_z^2))

    which for a diagonal Sigma_c is the paper's sum over j of log sigma_cj^2 +
    (mu_zj - mu_cj)^2 / sigma_cj^2 + sigma_zj^2 / sigma_cj^2.
    """
    gamma = log_gamma.exp()
    entropy_term = -0.5 * (1.0 + logvar).sum(-1)
    categorical = (gamma * (prior.log_weights()[None] - log_gamma)).sum(-1)
    gaussian = (
        prior.log_determinants()[None]
        + prior.whiten(mu).square().sum(-1)
        + logvar.exp() @ prior.precision_diagonals().T
    )  # (N, K)
    return entropy_term - categorical + 0.5 * (gamma * gaussian).sum(-1)


def l2_penalty(networks: list[nn.Module]) -> torch.Tensor:
    """Sum of squares of every conv/linear weight and bias (the paper's Keras l2 regulariser);
    multiplied by `train.l2` (0.01) and added to the loss as an explicit penalty."""
    return sum(
        parameter.float().square().sum()
        for network in networks
        for module in network.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
        for parameter in module.parameters(recurse=False)
    )
