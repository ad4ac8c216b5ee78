"""The LightningModule: what one training step is, every loss weight from the epoch's s3VDC
Phase. Two callbacks are part of the method, not side jobs, and the module refuses to train
without them (`essential_callbacks`): S3VDCSchedule sets each epoch's Phase and learning rate,
MiniBatchGMMInit creates the mixture prior after the alpha phase (and refits it where the
config says). The metrics file and the checkpoint are side jobs (callbacks.py); the loop,
checkpoints and DDP belong to the Trainer."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from astrovader.config import Config
from astrovader.data.loader import EpochBatches, seed_for
from astrovader.errors import TrainingError
from astrovader.model.losses import l2_penalty
from astrovader.model.vade import VaDE
from astrovader.train.schedule import Phase, phase_at

VALIDATION_STREAM = 1  # separates the validation noise from the training noise of epoch 0


@dataclass
class TrainingData:
    """Pixels (uint8 cache memory map or float array, (N, C, H, W)) and the rows of each split."""

    images: np.ndarray
    train_rows: np.ndarray
    validation_rows: np.ndarray


class VaDETraining(L.LightningModule):
    def __init__(self, config: Config, data: TrainingData):
        super().__init__()
        self.config = config
        self.data = data
        self.model = VaDE(config)
        self.model.measure_noise(data.images, data.train_rows)  # a resumed run's checkpoint restores the same value
        self.model.start_encoder(data.images, data.train_rows)  # and its trained encoder
        # EM updates (train.prior_update: em): the GMM callback refits the prior, not the optimiser.
        self.model.prior.requires_grad_(config.train.prior_update == "gradient")
        self.phase: Phase = phase_at(0, config.train)
        self.generator: torch.Generator | None = None
        self.epoch_sums: dict[str, defaultdict[str, float]] = {}
        self._train_batches: EpochBatches | None = None

    # -- data -----------------------------------------------------------------------------
    def _batches(self, rows: np.ndarray, shuffle: bool) -> EpochBatches:
        train, world = self.config.train, self.trainer.world_size
        if shuffle and len(rows) % world:
            # DDP synchronises every training step, so all ranks need the same number of batches:
            # as DistributedSampler does, repeat the first few rows to share the split evenly.
            rows = np.resize(rows, -(-len(rows) // world) * world)
        return EpochBatches(
            self.data.images, rows, train.batch_size, train.seed, shuffle=shuffle,
            augmentation=self.config.data.augment if shuffle else "none",
            rank=self.global_rank, world_size=world,
        )

    def train_dataloader(self) -> DataLoader:
        self._train_batches = self._batches(self.data.train_rows, shuffle=True)
        return DataLoader(self._train_batches, batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._batches(self.data.validation_rows, shuffle=False), batch_size=None, shuffle=False)

    # -- epochs -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        from astrovader.train.callbacks import essential_callbacks  # they import this module

        missing = [type(callback).__name__ for callback in essential_callbacks()
                   if not any(isinstance(given, type(callback)) for given in self.trainer.callbacks)]
        if missing:
            raise TrainingError(f"VaDETraining trains only with the s3VDC callbacks; missing: {', '.join(missing)} "
                                f"(train.callbacks.essential_callbacks)")

    def start_epoch(self, phase: Phase) -> None:
        """Called by the schedule callback before each epoch: weights, seeds and batch order."""
        self.phase = phase
        self.model.encoder.requires_grad_(not self.model.holds_encoder(phase.name))
        epoch = self.current_epoch
        self.generator = torch.Generator(device=self.device).manual_seed(
            seed_for(self.config.train.seed, epoch, self.global_rank)
        )
        if self._train_batches is not None:
            self._train_batches.set_epoch(epoch)
        self.epoch_sums = {}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A checkpoint written before model.noise existed has no noise_sigma buffer: keep the one
        # measured on this run's training rows, so that an interrupted older run still resumes.
        checkpoint["state_dict"].setdefault("model.noise_sigma", self.model.noise_sigma.clone())

    def on_validation_epoch_start(self) -> None:
        self.validation_generator = torch.Generator(device=self.device).manual_seed(
            seed_for(self.config.train.seed, VALIDATION_STREAM, self.global_rank)
        )

    # -- steps ------------------------------------------------------------------------------
    def _step(self, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return step_loss(self.model, batch, generator, self.phase)

    def training_step(self, batch: torch.Tensor, batch_index: int) -> torch.Tensor:
        total, terms = self._step(batch, self.generator)
        if not torch.isfinite(total):
            raise TrainingError(
                f"non-finite loss at epoch {self.current_epoch} batch {batch_index} ({self.phase.name} phase): "
                f"training stopped; the last good checkpoint is kept ({_describe(terms)})"
            )
        self._accumulate("train", terms, len(batch))
        return total

    def validation_step(self, batch: torch.Tensor, batch_index: int) -> None:
        _, terms = self._step(batch, self.validation_generator)
        self._accumulate("validation", terms, len(batch))

    def _accumulate(self, stage: str, terms: dict[str, torch.Tensor], count: int) -> None:
        sums = self.epoch_sums.setdefault(stage, defaultdict(float))
        for name, value in terms.items():
            sums[name] += float(value.detach()) * count
        sums["count"] += count

    def epoch_means(self, stage: str) -> dict[str, float]:
        """Mean of each loss term over this epoch's samples (summed over ranks)."""
        sums = self.epoch_sums.get(stage)
        if not sums:
            return {}
        names = sorted(sums)
        values = torch.tensor([sums[name] for name in names], dtype=torch.float64, device=self.device)
        if self.trainer.world_size > 1:
            values = self.trainer.strategy.reduce(values, reduce_op="sum")
        totals = dict(zip(names, values.tolist()))
        count = totals.pop("count")
        return {name: value / count for name, value in totals.items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The L2 penalty is explicit in the loss (as Keras' regulariser), not Adam weight decay.
        trained = [parameter for parameter in self.parameters() if parameter.requires_grad]
        return torch.optim.Adam(trained, lr=self.config.train.learning_rate)


def step_loss(model: VaDE, batch: torch.Tensor, generator: torch.Generator | None,
              phase: Phase) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One batch's loss with the weights of its epoch's Phase: (total, each term's batch mean).
    The L2 sum over every weight is made only where its weight is not 0 (the default recipe
    trains without it), so that a step does not pay for a term it multiplies by 0."""
    with_mixture = bool(model.prior.initialised)
    terms = model.loss_terms(batch, generator, stochastic=phase.name != "autoencoder", with_mixture=with_mixture)
    total = terms["reconstruction"]
    if phase.l2_weight > 0:
        total = total + phase.l2_weight * l2_penalty([model.encoder, model.decoder])
    total = total + phase.kl_normal_weight * terms["kl_normal"]
    if with_mixture and phase.kl_mixture_weight > 0:
        total = total + phase.kl_mixture_weight * terms["kl_mixture"]
    terms["total"] = total
    return total, terms


def _describe(terms: dict[str, torch.Tensor]) -> str:
    return ", ".join(f"{name} {float(value.detach()):.4g}" for name, value in terms.items())
