"""Encoders and decoders (paper section 3.4, Fig. 1), pluggable by backbone.

Conv encoder: blocks of [conv, conv, 2x2 max-pool], 'same' padding, LeakyReLU(0.1); flatten;
two linear heads for mu_z and log sigma^2_z.
Conv decoder: linear(J -> flat) + LeakyReLU, reshape, blocks of [conv, conv, 2x bilinear
up-sample] with the filters reversed, a final conv to the bands with ReLU (sigmoid for BCE).
MLP backbone: VaDE's D-500-500-2000-J and its mirror, for flat vector data such as MNIST.
PCA encoder (model.encoder = pca, with either decoder): a linear map of the aperture-weighted
pixels, started at their whitened principal components.

Every encoder returns (mu, logvar); both decoders map z to an image of the input's shape.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import nn

from astrovader.config import Config
from astrovader.model.losses import aperture_pixel_weights

OUTPUT_BIAS = 0.1
LOGVAR_START = -6.0
VARIANCE_FLOOR = 1e-6  # of the leading principal component's: the PCA encoder's whitening limit


class ConvEncoder(nn.Module):
    def __init__(self, bands: int, size: int, filters, kernels, latent_dim: int, slope: float):
        super().__init__()
        layers: list[nn.Module] = []
        channels = bands
        for width, kernel in zip(filters, kernels):
            layers += _conv_pair(channels, width, kernel, slope)
            layers.append(nn.MaxPool2d(2))
            channels = width
        self.body = nn.Sequential(*layers)
        flat = int(np.prod(conv_flat_shape(size, filters)))
        self.mu, self.logvar = latent_heads(flat, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x).flatten(1)
        return self.mu(h), self.logvar(h)


class ConvDecoder(nn.Module):
    def __init__(self, bands, flat_shape, filters, kernels, output_kernel, latent_dim, slope, output):
        super().__init__()
        self.flat_shape = flat_shape
        self.dense = nn.Sequential(nn.Linear(latent_dim, flat_shape[0] * flat_shape[1] * flat_shape[2]), nn.LeakyReLU(slope))
        layers: list[nn.Module] = []
        channels = flat_shape[0]
        for width, kernel in zip(filters, kernels):
            layers += _conv_pair(channels, width, kernel, slope)
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            channels = width
        output_layer = nn.Conv2d(channels, bands, output_kernel, padding="same")
        if output != "bce":
            # A ReLU output that starts negative everywhere never recovers (no gradient): start
            # from a small positive brightness so every pixel is alive at the first step.
            nn.init.constant_(output_layer.bias, OUTPUT_BIAS)
        layers += [output_layer, nn.Sigmoid() if output == "bce" else nn.ReLU()]
        self.body = nn.Sequential(*layers)

        self.channels_last = False  # set with the precision: pays only together with bf16

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z).view(-1, *self.flat_shape)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        return self.body(h)


class MLPEncoder(nn.Module):
    def __init__(self, input_dim: int, hidden, latent_dim: int, activation: str):
        super().__init__()
        self.body = _mlp([input_dim, *hidden], activation)
        self.mu, self.logvar = latent_heads(hidden[-1], latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.flatten(1))
        return self.mu(h), self.logvar(h)


class PCAEncoder(nn.Module):
    """mu_z and log sigma^2_z as linear maps of the pixels weighted by the square root of the
    aperture (what the pca-gmm-aperture baseline projects; all pixels alike without one). `start`
    sets mu_z to the whitened principal components of training images: on the GZ1 cutouts a
    mixture clusters those better than any embedding an autoencoder learns (benchmarks/README.md)."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, aperture: float | None):
        super().__init__()
        self.register_buffer("pixel_weights", aperture_pixel_weights(shape, aperture, torch.device("cpu")))
        self.mu, self.logvar = latent_heads(len(self.pixel_weights), latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, enabled=False):  # whitened trailing components lose too much in bf16
            weighted = x.float().flatten(1) * self.pixel_weights
            return self.mu(weighted), self.logvar(weighted)

    @torch.no_grad()
    def start(self, pixels: torch.Tensor, seed: int) -> None:
        """mu_z = the whitened principal components of `pixels` ((N, C, H, W) in [0, 1]):
        zero mean and unit variance in every latent dimension, uncorrelated, on these pixels."""
        weighted = (pixels.float().flatten(1) * self.pixel_weights.cpu()).numpy()
        pca = PCA(self.mu.out_features, random_state=seed).fit(weighted)
        # A direction the images do not vary along (fewer distinct images than components) keeps
        # a finite scale instead of dividing by zero.
        variances = np.maximum(pca.explained_variance_, VARIANCE_FLOOR * pca.explained_variance_[0])
        projection = pca.components_ / np.sqrt(variances)[:, None]
        self.mu.weight.copy_(torch.from_numpy(projection))
        self.mu.bias.copy_(torch.from_numpy(-projection @ pca.mean_))


class MLPDecoder(nn.Module):
    def __init__(self, image_shape, hidden, latent_dim: int, output: str, activation: str):
        super().__init__()
        self.image_shape = tuple(image_shape)
        input_dim = int(torch.tensor(self.image_shape).prod())
        output_layer = nn.Linear(hidden[0], input_dim)
        if output != "bce":
            nn.init.constant_(output_layer.bias, OUTPUT_BIAS)  # as ConvDecoder: a live ReLU output
        self.body = nn.Sequential(_mlp([latent_dim, *reversed(hidden)], activation), output_layer)
        self.output = nn.Sigmoid() if output == "bce" else nn.ReLU()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(z)).view(-1, *self.image_shape)


def latent_heads(fan_in: int, latent_dim: int) -> tuple[nn.Linear, nn.Linear]:
    """The linear mu_z and log sigma^2_z heads. log sigma^2 starts at LOGVAR_START: with unit
    noise at the start, z is all noise (freshly initialised mu is ~0.1), the decoder learns to
    ignore it, and the weakly weighted alpha phase never recovers; the latents then stay unused
    and the GMM initialisation fits nothing."""
    mu, logvar = nn.Linear(fan_in, latent_dim), nn.Linear(fan_in, latent_dim)
    nn.init.constant_(logvar.bias, LOGVAR_START)
    return mu, logvar


def _conv_pair(channels: int, width: int, kernel: int, slope: float) -> list[nn.Module]:
    return [
        nn.Conv2d(channels, width, kernel, padding="same"), nn.LeakyReLU(slope),
        nn.Conv2d(width, width, kernel, padding="same"), nn.LeakyReLU(slope),
    ]


def _mlp(widths, activation: str) -> nn.Sequential:
    # VaDE's MLP uses ReLU between layers, ClustPy's LeakyReLU (PyTorch's slope, 0.01).
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU() if activation == "relu" else nn.LeakyReLU()]
    return nn.Sequential(*layers)


def build_networks(config: Config) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for the configured backbone, encoder and input geometry."""
    model, data = config.model, config.data
    if model.encoder == "pca":
        encoder = PCAEncoder(data.input_shape, model.latent_dim, model.aperture)
    elif model.backbone == "mlp":
        encoder = MLPEncoder(int(np.prod(data.input_shape)), model.hidden, model.latent_dim, model.mlp_activation)
    else:
        encoder = ConvEncoder(data.bands, data.image_size, model.filters, model.kernels, model.latent_dim,
                              model.leaky_slope)
    if model.backbone == "mlp":
        return encoder, MLPDecoder(data.input_shape, model.hidden, model.latent_dim, model.reconstruction,
                                   model.mlp_activation)
    decoder_kernels = model.decoder_kernels or tuple(reversed(model.kernels))
    decoder = ConvDecoder(
        data.bands, conv_flat_shape(data.image_size, model.filters), tuple(reversed(model.filters)),
        decoder_kernels, model.output_kernel, model.latent_dim, model.leaky_slope, model.reconstruction,
    )
    return encoder, decoder


def conv_flat_shape(size: int, filters) -> tuple[int, int, int]:
    """(channels, height, width) at the conv encoder's end, where the conv decoder starts: each
    block halves the side."""
    return filters[-1], size >> len(filters), size >> len(filters)
