"""The one typed configuration: data preprocessing, network, s3VDC schedule.

Every command reads a `Config`, and every trained model and cache carries the one it was made
with (as JSON/YAML), so a result can always be traced to its settings. Presets are partial
overrides of the defaults; the defaults are the `cpu` preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from astrovader.errors import AstroVaDErError

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class DataConfig(_Section):
    """How catalogue rows become model inputs (paper section 2)."""

    id_column: str = "id_str"
    file_column: str = "file_loc"
    where: str | None = Field(None, description="pandas query selecting rows, e.g. 't01_total_votes > 36'")
    crop_fraction: float = Field(0.75, gt=0, le=1, description="central crop, fraction of the shorter side")
    crop_pixels: int | None = Field(None, gt=0, description="central crop in pixels; overrides crop_fraction")
    color: Literal["gray", "rgb"] = "gray"
    image_size: int = Field(64, ge=4, description="side of the model input in pixels")
    resize_filter: Literal["area", "bilinear", "lanczos"] = "area"
    scaling: Literal["minmax", "fixed", "peak", "asinh"] = Field(
        "asinh", description="to [0, 1]: per-image min-max (the paper), /fixed_max, or sky-subtracted and "
        "divided by the galaxy's peak, linearly (peak) or through an asinh stretch"
    )
    fixed_max: float = Field(255.0, gt=0, description="divisor of the 'fixed' scaling")
    asinh_softening: float = Field(30.0, gt=0, description="asinh knee in units of the image's noise sigma")
    sky_level: float = Field(0.2, ge=0, lt=1, description="where the sky sits after the peak/asinh scalings")
    orientation: Literal["none", "major-axis", "canonical"] = Field(
        "canonical", description="turn each image so that its galaxy's major axis is horizontal (second moments); "
        "canonical: then also flip it so that the light off its centre (companions, asymmetries) lies towards "
        "its last column and row"
    )
    neighbours: Literal["keep", "mask", "mask-blended"] = Field(
        "keep", description="sources other than the central galaxy (field stars, neighbours, companions): kept, or "
        "replaced by sky noise when detached from it (mask), or also where they overlap it (mask-blended: split by "
        "deblending)"
    )
    nonfinite: Literal["zero", "median", "reject"] = "zero"
    train_fraction: float = Field(0.8, gt=0, lt=1)
    split_round_to: int = Field(100, gt=0, description="training set rounded down to a multiple of this")
    validation_size: int = Field(5000, ge=0)
    validation_fraction: float = Field(0.05, ge=0, lt=1)
    split_seed: int = 0
    augment: Literal["flips", "flips+rot90", "rotations", "none"] = Field(
        "none", description="at every draw: random flips (the paper), plus 90-degree turns, or plus any angle; none "
        "with the canonical orientation, which the flips would undo"
    )
    workers: int = Field(2, ge=1)

    @property
    def bands(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one model input."""
        return self.bands, self.image_size, self.image_size


class ModelConfig(_Section):
    """Network and mixture prior (paper section 3.4)."""

    backbone: Literal["conv", "mlp"] = "conv"
    encoder: Literal["network", "pca"] = Field(
        "network", description="network: the backbone's encoder; pca: a linear map of the pixels (weighted by the "
        "square root of the aperture) started at their whitened principal components, measured on the training "
        "images before training, held while the decoder pretrains, trained with the mixture after"
    )
    filters: tuple[int, ...] = (32, 32, 16)
    kernels: tuple[int, ...] = (3, 5, 5)
    decoder_kernels: tuple[int, ...] | None = Field(
        None, description="decoder block kernels in decoder order; None mirrors the encoder"
    )
    output_kernel: int = Field(3, gt=0)
    hidden: tuple[int, ...] = Field((500, 500, 2000), description="MLP backbone layer widths")
    mlp_activation: Literal["relu", "leaky_relu"] = Field(
        "relu", description="between the MLP backbone's layers: ReLU (VaDE's MLP) or LeakyReLU with slope 0.01 "
        "(ClustPy's)"
    )
    latent_dim: int = Field(20, gt=0)
    n_components: int = Field(12, gt=0)
    reconstruction: Literal["mse", "bce", "gaussian"] = Field(
        "gaussian", description="eq. 6 sum of squares (the paper), binary cross-entropy, or a Gaussian likelihood "
        "whose noise sigma is measured on the images' borders (model.noise)"
    )
    noise: Literal["image", "survey"] = Field(
        "image", description="sigma of the gaussian reconstruction: image, each image's own; survey, one for every "
        "image (the median of the training images' border noise, measured before training and saved with the model)"
    )
    aperture: float | None = Field(
        0.1875, gt=0, description="sigma of a Gaussian weight on the reconstruction term centred on the image, as "
        "a fraction of its side: the central galaxy counts fully, field stars and neighbours far out less; None: "
        "every pixel alike (the paper)"
    )
    gamma_scale: float = Field(50.0, gt=0, description="lambda of the eq. 17 min-max scaling")
    responsibilities: Literal["eq17", "posterior"] = Field(
        "posterior", description="gamma in the loss: eq. 17-scaled (the paper) or the plain Bayes posterior (VaDE)"
    )
    covariance: Literal["diag", "full"] = Field(
        "diag", description="mixture components' covariances: diagonal (the paper) or full"
    )
    leaky_slope: float = Field(0.1, ge=0)

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if len(self.filters) != len(self.kernels):
            raise ValueError(f"filters {self.filters} and kernels {self.kernels} must have the same length")
        if self.decoder_kernels is not None and len(self.decoder_kernels) != len(self.filters):
            raise ValueError(f"decoder_kernels {self.decoder_kernels} must have {len(self.filters)} entries")
        if min(self.filters) <= 0 or min(self.kernels) <= 0:
            raise ValueError("filters and kernels must be positive")
        return self


class TrainConfig(_Section):
    """s3VDC schedule (paper Table 1) and optimiser."""

    method: Literal["vade", "two_stage"] = Field(
        "vade", description="vade: mixture prior trained jointly; two_stage: autoencoder then a GMM"
    )
    # Small batches for the cpu preset: a ~5,000-image demo gets 300 steps per epoch, enough for
    # the autoencoder to leave the round-blob plateau (at 64 per batch it stays there; measured).
    batch_size: int = Field(16, gt=0)
    pretrain: Literal["alpha", "autoencoder"] = Field(
        "autoencoder", description="the first alpha_epochs: the paper's alpha phase (sampled z, alpha KL) or a plain "
        "autoencoder (decodes mu_z, no KL; VaDE and ClustPy)"
    )
    alpha: float = Field(0.0005, ge=0)
    alpha_epochs: int = Field(10, ge=1)
    gmm_batches: int = Field(300, gt=0, description="batches embedded to initialise the prior: all of a "
                             "~5,000-image training split at batch 16 (a GMM on 800 embeddings clusters worse)")
    gmm_init: Literal["kmeans", "umap"] = Field(
        "kmeans", description="how the prior starts: a GaussianMixture fitted to the embeddings (best of 10 "
        "k-means starts), or the parts of their UMAP manifold (N2D's read-out; Fashion-MNIST +0.006 to +0.024 NMI "
        "on every seed, the galaxies lower; benchmarks/README.md)")
    anneal_epochs: int = Field(3, ge=1)
    static_epochs: int = Field(3, ge=0)
    periods: int = Field(3, ge=0)
    anneal_power: float = Field(3.0, gt=0)
    mixture_kl_weight: float = Field(
        10.0, gt=0, description="weight of the mixture KL against the reconstruction: 1 is the ELBO of the Gaussian "
        "likelihood, 10 (the default) pulls the embedding towards its components ten times harder (GZ1 +0.01 NMI "
        "on every seed, simulated level; benchmarks/README.md); 1/256 as ClustPy's VaDE (its batch-summed "
        "reconstruction, batch-averaged KL); the paper's 0.3")
    prior_update: Literal["gradient", "em"] = Field(
        "gradient", description="the mixture prior in the joint phase: trained by Adam with the networks (VaDE), "
        "or refitted by EM to the embeddings of gmm_batches batches before every epoch"
    )
    final_refit: bool = Field(
        False, description="at the end of training, refit the prior by EM (from itself) to mu_z of the whole "
        "training split, as ClustPy's VaDE refits its readout GMM"
    )
    learning_rate: float = Field(1e-3, gt=0)
    final_learning_rate: float = Field(1e-4, gt=0)
    lr_decay_every: int = Field(1, gt=0, description="epochs between learning-rate steps")
    l2: float = Field(0.0, ge=0, description="L2 penalty on conv/linear weights and biases, added to the loss")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    threads: int | Literal["auto"] = Field(
        "auto", description="torch threads per training process; auto: the CPU layout rule "
        "(astrovader.hardware.training_layout), which also picks the processes when devices is auto"
    )
    num_nodes: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _check_threads(self) -> TrainConfig:
        if self.threads != "auto" and self.threads < 1:
            raise ValueError(f"threads = {self.threads}: must be >= 1, or auto")
        return self

    @property
    def total_epochs(self) -> int:
        return self.alpha_epochs + self.periods * (self.anneal_epochs + self.static_epochs)


class Config(_Section):
    preset: str = "cpu"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _check_geometry(self) -> Config:
        if self.model.backbone == "conv":
            factor = 2 ** len(self.model.filters)
            if self.data.image_size % factor:
                raise ValueError(
                    f"data.image_size = {self.data.image_size} must be divisible by {factor} "
                    f"(2 ** number of conv blocks)"
                )
        return self

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str = "cpu", **overrides: Any) -> Config:
        if name not in PRESETS:
            raise AstroVaDErError(f"config: preset = {name!r}: unknown preset (choose from {', '.join(PRESETS)})")
        merged = _deep_merge(PRESETS[name], {"preset": name})
        return cls.from_dict(_deep_merge(merged, overrides))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Config:
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise AstroVaDErError(describe_validation_error(error, source)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.is_file():
            raise AstroVaDErError(f"config: {path}: file not found")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise AstroVaDErError(f"config: {path}: not valid YAML ({error.__class__.__name__})") from None
        if not isinstance(values, dict):
            raise AstroVaDErError(f"config: {path}: expected a mapping at the top level")
        # A file may name a preset; its own values then override that preset's.
        preset = values.get("preset", "cpu")
        if preset not in PRESETS:
            raise AstroVaDErError(f"config: {path}: preset = {preset!r}: unknown preset (choose from {', '.join(PRESETS)})")
        return cls.from_dict(_deep_merge(PRESETS[preset], values), source=str(path))

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-key overrides applied, e.g. {"train.seed": 3}."""
        values = self.model_dump()
        for dotted, value in overrides.items():
            node = values
            *parents, leaf = dotted.split(".")
            for key in parents:
                if key not in node or not isinstance(node[key], dict):
                    raise AstroVaDErError(f"config: {dotted}: unknown setting")
                node = node[key]
            if leaf not in node:
                raise AstroVaDErError(f"config: {dotted}: unknown setting")
            node[leaf] = value
        return Config.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from astrovader.atomic import write_text_atomic

            write_text_atomic(Path(path), text)
        return text


def describe_validation_error(error: ValidationError, source: str = "config") -> str:
    """One line naming the first bad field and its value."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    value = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    if isinstance(value, dict):
        return f"{source}: {field}: {message}"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {field} = {value!r}: {message}{more}"


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# The paper's numbers (sections 2-4, Table 1) and its recipe: per-image min-max pixels, the
# sum-of-squares likelihood, the alpha phase, eq. 17 responsibilities, L2 0.01, the mixture KL
# x 0.3. Every decoder convolution is 5x5 as in the published weights (871,381 parameters with
# the mixture; see METHOD.md).
PAPER = {
    "data": {"image_size": 128, "crop_fraction": 0.75, "color": "gray", "scaling": "minmax", "orientation": "none",
             "augment": "flips"},
    "model": {
        "filters": (64, 64, 16),
        "kernels": (3, 5, 5),
        "decoder_kernels": (5, 5, 5),
        "output_kernel": 3,
        "latent_dim": 20,
        "n_components": 12,
        "reconstruction": "mse",
        "responsibilities": "eq17",
        "aperture": None,
    },
    "train": {
        "batch_size": 180,
        "pretrain": "alpha",
        "alpha_epochs": 100,
        "gmm_batches": 200,
        "anneal_epochs": 25,
        "static_epochs": 25,
        "periods": 5,
        "mixture_kl_weight": 0.3,
        "learning_rate": 3e-4,
        "final_learning_rate": 1e-6,
        "lr_decay_every": 5,
        "l2": 0.01,
    },
}

# The default (the field defaults above): 64 px, filters 32/32/16, batch 16, the schedule
# scaled down ~1/10 (10 pretraining + 3 x (3 + 3) = 28 epochs), so that the demo (6,000
# simulated galaxies) trains in minutes on two cores with native bf16 (README gives the measured
# times); and the recipe that
# clusters best as measured (docs/method.md, "Beyond the paper"): sky-aware asinh pixels with
# the knee at 30 noise sigmas, each galaxy turned to its major axis and flipped to a canonical
# side (no flips in training), the Gaussian likelihood with each image's noise inside an
# aperture of 0.19 of the side, the mixture KL at weight 10 (ten times the ELBO's), a
# plain autoencoder pretraining without L2, ClustPy's learning rates, the plain posterior and a
# diagonal prior initialised on every training row.
CPU: dict[str, Any] = {}

# For tests: seconds, not minutes. At 16 px a reconstruction term sums only 256 pixels, so the
# paper's L2 weight (0.01, tuned for 16,384 pixels) would outweigh it, and a few hundred steps
# need a larger learning rate to leave the mean-image plateau.
TINY = {
    "data": {"image_size": 16, "split_round_to": 1, "validation_size": 64, "validation_fraction": 0.1},
    # Its 16 px test images fill the frame: no aperture (at 3 px it would leave the outer pixels'
    # weights all but untrained, where Adam turns rounding into steps).
    "model": {"filters": (16, 16, 8), "kernels": (3, 3, 3), "latent_dim": 4, "n_components": 3, "aperture": None},
    "train": {
        "batch_size": 16,
        "alpha_epochs": 2,
        "gmm_batches": 8,
        "anneal_epochs": 1,
        "static_epochs": 1,
        "periods": 2,
        "learning_rate": 3e-3,
        "final_learning_rate": 3e-4,
        "l2": 1e-4,
        # The ELBO's weight: a 16 px reconstruction sums 16 times fewer pixels than the default's,
        # so the mixture KL already weighs more against it than the default's 10 does at 64 px.
        "mixture_kl_weight": 1.0,
        # fp32 on every machine: the tests' tolerances and floors then hold alike on CPUs with and
        # without native bf16 (a model this small gains nothing from bf16: it is memory-bound).
        "precision": "fp32",
    },
}

PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER, "cpu": CPU, "tiny": TINY}
