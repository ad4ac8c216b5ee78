"""VaDE: encoder q(z|x), decoder p(x|z) and the mixture prior p(z, c) in one module.

Mixed precision: bf16 autocast covers the encoder and decoder bodies only; the heads' outputs,
the prior, gamma, the KL terms and every reduction stay fp32 (20-D Gaussian log-densities and
the eq. 17 scaling lose too much in bf16).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from astrovader.config import Config
from astrovader.data.loader import evenly_spread, read_rows, to_float
from astrovader.errors import TrainingError
from astrovader.model.losses import kl_mixture, kl_standard_normal, reconstruction_loss, survey_noise
from astrovader.model.mixture import MixturePrior
from astrovader.model.networks import build_networks

# Encoder log-variances beyond this range overflow exp() in fp32; a clamp keeps a diverging
# batch finite so that the NaN guard sees it in the loss instead of inside the network.
LOGVAR_RANGE = (-30.0, 30.0)
PCA_ROWS = 10_000  # training images whose principal components start the PCA encoder


class VaDE(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.config = config
        self.encoder, self.decoder = build_networks(config)
        model = config.model
        self.prior = MixturePrior(model.n_components, model.latent_dim, model.gamma_scale, model.covariance,
                                  model.responsibilities)
        self.precision = "fp32"
        # model.noise = survey: the gaussian reconstruction's one sigma, measured on the training
        # images before training (`measure_noise`) and saved with the weights; 0 until then.
        self.register_buffer("noise_sigma", torch.tensor(0.0))

    # -- precision ------------------------------------------------------------------------
    def set_precision(self, precision: str) -> None:
        """'bf16' turns on autocast and channels_last (they pay only together); 'fp32' off."""
        self.precision = precision
        channels_last = precision == "bf16" and self.config.model.backbone == "conv"
        self.decoder.channels_last = channels_last if hasattr(self.decoder, "channels_last") else False
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for network in (self.encoder, self.decoder):
            network.to(memory_format=memory_format)

    def _autocast(self, device_type: str):
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)

    # -- the generative model ---------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_z, log sigma^2_z) in fp32."""
        if self.precision == "bf16" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast(x.device.type):
            mu, logvar = self.encoder(x)
        return mu.float(), logvar.float().clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        with self._autocast(z.device.type):
            reconstruction = self.decoder(z)
        return reconstruction.float().contiguous()

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Eq. 3: z = mu + sigma * eps, eps ~ N(0, I) drawn from `generator` (reproducible)."""
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (0.5 * logvar).exp() * noise

    # -- measured on the training images before training -----------------------------------
    def start_encoder(self, images, rows) -> None:
        """Start the PCA encoder (model.encoder = pca) at the principal components of the
        training images (at most PCA_ROWS of `rows`, evenly spread); other encoders train from
        their random start."""
        if self.config.model.encoder != "pca":
            return
        latent_dim = self.config.model.latent_dim
        if len(rows) < latent_dim:
            raise TrainingError(f"model.encoder = pca starts from {latent_dim} principal components (model.latent_dim) "
                                f"but there are {len(rows)} training images: give more images or a smaller latent_dim")
        rows = np.sort(evenly_spread(rows, PCA_ROWS))
        self.encoder.start(to_float(read_rows(images, rows)), self.config.train.seed)

    def holds_encoder(self, phase_name: str) -> bool:
        """Whether the encoder is held in this phase: the PCA encoder while the decoder pretrains
        (learning to draw from the principal components), so that the mixture starts on them."""
        return self.config.model.encoder == "pca" and phase_name in ("alpha", "autoencoder")

    # -- loss -------------------------------------------------------------------------------
    @property
    def uses_survey_noise(self) -> bool:
        return self.config.model.reconstruction == "gaussian" and self.config.model.noise == "survey"

    def measure_noise(self, images, rows) -> None:
        """Set the survey's noise sigma from the training images (when model.noise is survey)."""
        if self.uses_survey_noise:
            self.noise_sigma.fill_(survey_noise(images, rows))

    def _noise(self) -> torch.Tensor | None:
        """The gaussian reconstruction's sigma: the survey's, or None for each image's own."""
        if not self.uses_survey_noise:
            return None
        if self.noise_sigma <= 0:
            raise TrainingError("model.noise = survey, but the survey's noise was not measured: call "
                                "VaDE.measure_noise on the training images first")
        return self.noise_sigma

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None, stochastic: bool = True,
                   with_mixture: bool = True) -> dict[str, torch.Tensor]:
        """Per-sample reconstruction, KL to N(0, I) and mixture KL, as batch means.

        `stochastic=False` decodes mu (the plain autoencoder of the two-stage baseline);
        `with_mixture=False` skips the mixture KL (before the prior is initialised).
        """
        mu, logvar = self.encode(x)
        z = self.reparameterise(mu, logvar, generator) if stochastic else mu
        terms = {
            "reconstruction": reconstruction_loss(self.decode(z), x, self.config.model.reconstruction,
                                                  self.config.model.aperture, self._noise()).mean(),
            "kl_normal": kl_standard_normal(mu, logvar).mean(),
        }
        if with_mixture:
            # gamma from the sampled z during training, as VaDE; prediction uses mu_z.
            terms["kl_mixture"] = kl_mixture(mu, logvar, self.prior.log_responsibilities(z), self.prior).mean()
        return terms

    def parameter_count(self) -> dict[str, int]:
        count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
        counts = {"encoder": count(self.encoder), "decoder": count(self.decoder), "mixture": count(self.prior)}
        counts["total"] = sum(counts.values())
        return counts
