"""The Gaussian-mixture prior p(c) p(z|c) of VaDE (paper eqs. 8-9, 12-13, 17).

Unlike the public code, pi lives on the simplex (softmax over logits) so the loss is a real
ELBO, variances are kept as log-variances (never clipped), and the eq. 17 min-max scaling is
applied per sample, so one galaxy's gamma never depends on its batch-mates.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


class MixturePrior(nn.Module):
    def __init__(self, n_components: int, latent_dim: int, gamma_scale: float = 50.0):
        super().__init__()
        self.gamma_scale = gamma_scale
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.zeros(n_components, latent_dim))
        self.log_variances = nn.Parameter(torch.zeros(n_components, latent_dim))
        # Set once the mini-batch GMM has initialised the prior; saved with every checkpoint.
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def n_components(self) -> int:
        return self.logits.shape[0]

    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=0)

    def log_likelihoods(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z | mu_c, diag sigma^2_c) for every component: (N, K), normalised."""
        difference = z[:, None, :] - self.means[None]
        mahalanobis = (difference.square() / self.log_variances.exp()[None]).sum(-1)
        return -0.5 * (mahalanobis + self.log_variances.sum(-1)[None] + z.shape[-1] * LOG_2PI)

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c, z) = log pi_c + log p(z|c): (N, K) (eq. 12)."""
        return self.log_weights()[None] + self.log_likelihoods(z)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_c log p(c, z): the log-likelihood under the mixture, (N,)."""
        return torch.logsumexp(self.log_joint(z), dim=-1)

    def scaled_log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """Eq. 17 per sample: log p(c, z) min-max scaled over components into [-lambda, 0]."""
        joint = self.log_joint(z)
        high = joint.max(dim=-1, keepdim=True).values
        low = joint.min(dim=-1, keepdim=True).values
        # A sample equally likely under every component (or K = 1) gets 0 everywhere, not NaN.
        return self.gamma_scale * (joint - high) / (high - low).clamp_min(1e-12)

    def log_responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        """log gamma_c (eqs. 13 + 17): log-softmax of the scaled log p(c, z), (N, K)."""
        return torch.log_softmax(self.scaled_log_joint(z), dim=-1)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_responsibilities(z).exp()

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """The unscaled Bayes posterior p(c | z), (N, K)."""
        return torch.softmax(self.log_joint(z), dim=-1)

    @torch.no_grad()
    def set_from_gmm(self, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> None:
        """Copy a fitted diagonal GaussianMixture into the prior (C20 mini-batch initialisation)."""
        device = self.logits.device
        self.logits.copy_(torch.as_tensor(np.log(np.clip(weights, 1e-12, None)), dtype=torch.float32, device=device))
        self.means.copy_(torch.as_tensor(means, dtype=torch.float32, device=device))
        self.log_variances.copy_(torch.as_tensor(np.log(variances), dtype=torch.float32, device=device))
        self.initialised.fill_(True)

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator, components: torch.Tensor | None = None,
               variance_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(components, z): c ~ Cat(pi) unless given, then z ~ N(mu_c, variance_scale * sigma^2_c)."""
        device = self.means.device
        if components is None:
            components = torch.multinomial(self.log_weights().exp().cpu(), count, replacement=True, generator=generator)
        components = components.to(device)
        noise = torch.randn((count, self.means.shape[1]), generator=generator).to(device)
        scale = (self.log_variances[components].exp() * variance_scale).sqrt()
        return components, self.means[components] + scale * noise
