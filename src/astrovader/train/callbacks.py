"""Callbacks: the s3VDC schedule, the mini-batch GMM initialisation, the per-epoch metrics file."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from astrovader.data.loader import EpochBatches
from astrovader.io import write_with
from astrovader.train.gmm import fit_diagonal_gmm
from astrovader.train.module import VaDETraining
from astrovader.train.schedule import gmm_init_epoch, phase_at


class S3VDCSchedule(Callback):
    """Before every epoch: the phase's loss weights and learning rate (a pure function of it)."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: VaDETraining) -> None:
        phase = phase_at(trainer.current_epoch, module.config.train)
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = phase.learning_rate
        module.start_epoch(phase)


@torch.no_grad()
def embed_rows(module: VaDETraining, rows: np.ndarray, seed: int) -> np.ndarray:
    """mu_z of `rows` (this rank's share), gathered from every rank in a fixed order."""
    batches = EpochBatches(
        module.data.images, rows, module.config.train.batch_size, seed, shuffle=False,
        augmentation="none", rank=module.global_rank, world_size=module.trainer.world_size,
    )
    was_training = module.model.training
    module.model.eval()
    local = torch.cat([module.model.encode(batch.to(module.device))[0] for batch in batches])
    module.model.train(was_training)
    if module.trainer.world_size > 1:
        # Shares can differ by one row; pad to the longest so all_gather sees equal shapes.
        size = torch.tensor([len(local)], device=module.device)
        longest = int(module.all_gather(size).max())
        padded = torch.cat([local, local.new_zeros(longest - len(local), local.shape[1])])
        gathered = module.all_gather(padded)  # (world, longest, J)
        sizes = module.all_gather(size).flatten().tolist()
        local = torch.cat([gathered[rank, : sizes[rank]] for rank in range(len(sizes))])
    return local.cpu().numpy()


def initialise_prior(module: VaDETraining, rows: np.ndarray) -> None:
    """Fit a diagonal GMM to mu_z of `rows` and copy it into the prior. Every rank fits the same
    gathered embeddings with the same seed, so every rank holds the same prior."""
    embeddings = embed_rows(module, rows, module.config.train.seed)
    mixture = fit_diagonal_gmm(embeddings, module.config.model.n_components, module.config.train.seed)
    module.model.prior.set_from_gmm(mixture.weights_, mixture.means_, mixture.covariances_)


class MiniBatchGMMInit(Callback):
    """s3VDC: after the alpha phase, initialise the prior from k mini-batches of embeddings.
    The two-stage baseline instead fits the mixture on all training embeddings at the end."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: VaDETraining) -> None:
        train = module.config.train
        if gmm_init_epoch(train) != trainer.current_epoch or module.model.prior.initialised:
            return
        order = np.random.default_rng([train.seed, trainer.current_epoch]).permutation(len(module.data.train_rows))
        chosen = module.data.train_rows[order[: train.gmm_batches * train.batch_size]]
        initialise_prior(module, np.sort(chosen))

    def on_train_end(self, trainer: L.Trainer, module: VaDETraining) -> None:
        if gmm_init_epoch(module.config.train) is None and not module.model.prior.initialised:
            initialise_prior(module, module.data.train_rows)


class EpochMetrics(Callback):
    """Writes `metrics.csv` after every epoch: phase, weights, learning rate, and the mean total,
    reconstruction, KL to N(0, I) and mixture KL for train and validation. Rows of epochs that a
    resumed run repeats are replaced, never duplicated."""

    COLUMNS = ("total", "reconstruction", "kl_normal", "kl_mixture")

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, module: VaDETraining) -> None:
        row = self.row(trainer.current_epoch, module)
        if trainer.global_rank != 0:
            return
        table = pd.read_csv(self.path) if self.path.exists() else pd.DataFrame()
        if not table.empty:
            table = table[table["epoch"] < row["epoch"]]
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        write_with(self.path, lambda path: table.to_csv(path, index=False))

    def row(self, epoch: int, module: VaDETraining) -> dict[str, object]:
        phase = module.phase
        row: dict[str, object] = {
            "epoch": epoch, "phase": phase.name, "period": phase.period, "learning_rate": phase.learning_rate,
            "kl_normal_weight": phase.kl_normal_weight, "kl_mixture_weight": phase.kl_mixture_weight,
        }
        for stage in ("train", "validation"):
            means = module.epoch_means(stage)
            for name in self.COLUMNS:
                row[f"{stage}_{name}"] = means.get(name, float("nan"))
        return row


class SaveLastCheckpoint(Callback):
    """After every epoch (metrics written first), the full training state to one file, written
    atomically, so a kill at any moment leaves the previous epoch's state intact."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, module: VaDETraining) -> None:
        trainer.save_checkpoint(self.path)
