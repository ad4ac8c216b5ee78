"""The Gaussian-mixture prior p(c) p(z|c) of VaDE (paper eqs. 8-9, 12-13, 17).

Unlike the public code, pi lives on the simplex (softmax over logits) so the loss is a real
ELBO, variances are kept as log-variances (never clipped), and the eq. 17 min-max scaling is
applied per sample, so one galaxy's gamma never depends on its batch-mates.

Each component's covariance is diagonal (the paper) or full. A full covariance is kept as its
Cholesky factor L_c = diag(exp(log_variances_c / 2)) + the strictly lower triangle of
`lower_c`, so that it is positive definite for any parameter values; with `lower` = 0 it is the
diagonal prior. An autoencoder's latents are correlated within a cluster, which a diagonal
component cannot describe (see docs/method.md for the figures).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
Covariance = Literal["diag", "full"]
Responsibilities = Literal["eq17", "posterior"]


class MixturePrior(nn.Module):
    def __init__(self, n_components: int, latent_dim: int, gamma_scale: float = 50.0,
                 covariance: Covariance = "diag", responsibilities: Responsibilities = "eq17"):
        super().__init__()
        self.gamma_scale = gamma_scale
        self.covariance = covariance
        self.responsibility_kind = responsibilities
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.means = nn.Parameter(torch.zeros(n_components, latent_dim))
        # Diagonal prior: log sigma^2_c. Full prior: log of the squared diagonal of L_c.
        self.log_variances = nn.Parameter(torch.zeros(n_components, latent_dim))
        if covariance == "full":
            self.lower = nn.Parameter(torch.zeros(n_components, latent_dim, latent_dim))
        # Set once the mini-batch GMM has initialised the prior; saved with every checkpoint.
        self.register_buffer("initialised", torch.tensor(False))

    @property
    def n_components(self) -> int:
        return self.logits.shape[0]

    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=0)

    # -- the Gaussians -----------------------------------------------------------------------
    def scale_tril(self) -> torch.Tensor:
        """L_c with Sigma_c = L_c L_c^T: (K, J, J)."""
        diagonal = torch.diag_embed((0.5 * self.log_variances).exp())
        if self.covariance == "diag":
            return diagonal
        return diagonal + torch.tril(self.lower, diagonal=-1)

    def covariances(self) -> torch.Tensor:
        """Sigma_c: (K, J) variances for the diagonal prior, (K, J, J) matrices for the full one."""
        if self.covariance == "diag":
            return self.log_variances.exp()
        tril = self.scale_tril()
        return tril @ tril.transpose(-1, -2)

    def log_determinants(self) -> torch.Tensor:
        """log |Sigma_c|: (K,) (the log of the squared diagonal of L_c, summed)."""
        return self.log_variances.sum(-1)

    def whiten(self, z: torch.Tensor) -> torch.Tensor:
        """L_c^{-1} (z - mu_c) for every component: (N, K, J); its squared norm is the
        Mahalanobis distance of z from component c."""
        difference = z[:, None, :] - self.means[None]
        if self.covariance == "diag":
            return difference * (-0.5 * self.log_variances).exp()[None]
        solved = torch.linalg.solve_triangular(self.scale_tril(), difference.permute(1, 2, 0), upper=False)
        return solved.permute(2, 0, 1)  # (K, J, N) -> (N, K, J)

    def precision_diagonals(self) -> torch.Tensor:
        """The diagonal of Sigma_c^{-1}: (K, J) (for the trace term of the KL, eq. 11)."""
        if self.covariance == "diag":
            return (-self.log_variances).exp()
        tril = self.scale_tril()
        identity = torch.eye(tril.shape[-1], dtype=tril.dtype, device=tril.device).expand_as(tril)
        inverse = torch.linalg.solve_triangular(tril, identity, upper=False)  # L^{-1}
        return inverse.square().sum(-2)  # (L^{-T} L^{-1})_jj = sum_i (L^{-1})_ij^2

    def log_likelihoods(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z | mu_c, Sigma_c) for every component: (N, K), normalised."""
        mahalanobis = self.whiten(z).square().sum(-1)
        return -0.5 * (mahalanobis + self.log_determinants()[None] + z.shape[-1] * LOG_2PI)

    # -- components given z --------------------------------------------------------------------
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
        """log gamma_c, (N, K): the log-softmax of the eq. 17-scaled log p(c, z) (eqs. 13 + 17,
        the paper), or the plain Bayes posterior log p(c | z) (VaDE)."""
        if self.responsibility_kind == "posterior":
            return torch.log_softmax(self.log_joint(z), dim=-1)
        return torch.log_softmax(self.scaled_log_joint(z), dim=-1)

    def responsibilities(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_responsibilities(z).exp()

    def posterior(self, z: torch.Tensor) -> torch.Tensor:
        """The unscaled Bayes posterior p(c | z), (N, K)."""
        return torch.softmax(self.log_joint(z), dim=-1)

    # -- set and draw ---------------------------------------------------------------------------
    @torch.no_grad()
    def set_from_gmm(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> None:
        """Copy a fitted GaussianMixture (covariances (K, J) diagonal or (K, J, J) full) into the
        prior (C20 mini-batch initialisation)."""
        device = self.logits.device
        tensor = lambda values: torch.as_tensor(np.asarray(values), dtype=torch.float32, device=device)  # noqa: E731
        covariances = np.asarray(covariances, dtype=np.float64)
        if covariances.ndim == 3:
            if self.covariance == "diag":
                raise ValueError("a diagonal prior cannot hold full covariance matrices")
            tril = np.linalg.cholesky(covariances)
            self.log_variances.copy_(tensor(np.log(np.diagonal(tril, axis1=1, axis2=2) ** 2)))
            self.lower.copy_(tensor(np.tril(tril, k=-1)))
        else:
            self.log_variances.copy_(tensor(np.log(covariances)))
            if self.covariance == "full":
                self.lower.zero_()
        self.logits.copy_(tensor(np.log(np.clip(weights, 1e-12, None))))
        self.means.copy_(tensor(means))
        self.initialised.fill_(True)

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator, components: torch.Tensor | None = None,
               variance_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(components, z): c ~ Cat(pi) unless given, then z ~ N(mu_c, variance_scale * Sigma_c)."""
        device = self.means.device
        if components is None:
            components = torch.multinomial(self.log_weights().exp().cpu(), count, replacement=True, generator=generator)
        components = components.to(device)
        noise = torch.randn((count, self.means.shape[1]), generator=generator).to(device)
        if self.covariance == "diag":
            spread = (0.5 * self.log_variances).exp()[components] * noise
        else:
            spread = (self.scale_tril()[components] @ noise[:, :, None])[:, :, 0]
        return components, self.means[components] + math.sqrt(variance_scale) * spread
