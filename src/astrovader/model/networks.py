"""Encoders and decoders (paper section 3.4, Fig. 1), pluggable by backbone.

Conv encoder: blocks of [conv, conv, 2x2 max-pool], 'same' padding, LeakyReLU(0.1); flatten;
two linear heads for mu_z and log sigma^2_z.
Conv decoder: linear(J -> flat) + LeakyReLU, reshape, blocks of [conv, conv, 2x bilinear
up-sample] with the filters reversed, a final conv to the bands with ReLU (sigmoid for BCE).
MLP backbone: VaDE's D-500-500-2000-J and its mirror, for flat vector data such as MNIST.

Both encoders return (mu, logvar); both decoders map z to an image of the input's shape.
"""

from __future__ import annotations

import torch
from torch import nn

from astrovader.config import Config

OUTPUT_BIAS = 0.1
LOGVAR_START = -6.0


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
        self.flat_shape = (channels, size >> len(filters), size >> len(filters))
        flat = channels * self.flat_shape[1] * self.flat_shape[2]
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
    """(encoder, decoder) for the configured backbone and input geometry."""
    model, data = config.model, config.data
    if model.backbone == "mlp":
        shape = data.input_shape
        input_dim = shape[0] * shape[1] * shape[2]
        return (
            MLPEncoder(input_dim, model.hidden, model.latent_dim, model.mlp_activation),
            MLPDecoder(shape, model.hidden, model.latent_dim, model.reconstruction, model.mlp_activation),
        )
    encoder = ConvEncoder(
        data.bands, data.image_size, model.filters, model.kernels, model.latent_dim, model.leaky_slope
    )
    decoder_kernels = model.decoder_kernels or tuple(reversed(model.kernels))
    decoder = ConvDecoder(
        data.bands, encoder.flat_shape, tuple(reversed(model.filters)), decoder_kernels,
        model.output_kernel, model.latent_dim, model.leaky_slope, model.reconstruction,
    )
    return encoder, decoder
