"""Callbacks: the s3VDC schedule and the mini-batch GMM initialisation, which the module cannot
train without (`essential_callbacks`), and the side jobs: the per-epoch metrics file and the
last checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from astrovader.atomic import write_with
from astrovader.data.loader import EpochBatches
from astrovader.train.gmm import fit_gmm, manifold_mixture
from astrovader.train.module import VaDETraining
from astrovader.train.schedule import gmm_init_epoch, phase_at


def essential_callbacks() -> list[Callback]:
    """The callbacks that are part of the method (VaDETraining checks for them), in the order
    they run: the epoch's Phase first, then the mixture that Phase may need."""
    return [S3VDCSchedule(), MiniBatchGMMInit()]


class S3VDCSchedule(Callback):
    """Before every epoch: the phase's loss weights and learning rate (a pure function of it)."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: VaDETraining) -> None:
        phase = phase_at(trainer.current_epoch, module.config.train)
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = phase.learning_rate
        module.start_epoch(phase)


@torch.no_grad()
def embed_rows(module: VaDETraining, rows: np.ndarray, seed: int) -> np.ndarray:
    """mu_z of `rows`: each rank embeds its share, and the shares are gathered back into the
    order of `rows`, so the mixture is fitted to the same data in the same order however many
    ranks there are."""
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
        ordered = local.new_empty(sum(sizes), local.shape[1])
        for rank, count in enumerate(sizes):
            ordered[rank :: len(sizes)] = gathered[rank, :count]  # rank r embedded rows[r::world]
        local = ordered
    return local.cpu().numpy()


def initialise_prior(module: VaDETraining, rows: np.ndarray, warm: bool = False) -> None:
    """Fit a GMM (of the prior's covariance type) to mu_z of `rows` and copy it into the prior;
    `warm`: EM from the current prior instead of a cold start (k-means-seeded fits or, with
    `train.gmm_init: umap`, the parts of the embeddings' UMAP manifold). Rank 0 fits the embeddings
    gathered from every rank and sends its mixture to the others, so every rank holds the same
    prior bit for bit (fits on other ranks could differ in the last bits on other hardware)."""
    embeddings = embed_rows(module, rows, module.config.train.seed)
    prior = module.model.prior
    fitted = None
    if module.global_rank == 0:
        model, seed = module.config.model, module.config.train.seed
        start = None
        if warm:
            start = tuple(value.detach().cpu().double().numpy() for value in
                          (prior.log_weights().exp(), prior.means, prior.covariances()))
        if start is None and module.config.train.gmm_init == "umap":
            fitted = manifold_mixture(embeddings, model.n_components, seed, model.covariance)
        else:
            mixture = fit_gmm(embeddings, model.n_components, seed, model.covariance, start=start)
            fitted = (mixture.weights_, mixture.means_, mixture.covariances_)
    prior.set_from_gmm(*module.trainer.strategy.broadcast(fitted, src=0))


class MiniBatchGMMInit(Callback):
    """s3VDC: after the alpha phase, initialise the prior from k mini-batches of embeddings.
    With `train.prior_update: em` the prior is not trained by the optimiser but refitted by EM
    (from itself) to the embeddings of k fresh mini-batches before every later epoch, and to
    those of the whole training split at the end (also done alone with `train.final_refit`). The
    two-stage baseline fits the mixture on all training embeddings at the end."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: VaDETraining) -> None:
        train, epoch = module.config.train, trainer.current_epoch
        start = gmm_init_epoch(train)
        if start is None or epoch < start:
            return
        initialised = bool(module.model.prior.initialised)
        if epoch == start and not initialised:
            initialise_prior(module, self.batch_rows(module, epoch))
        elif train.prior_update == "em" and initialised:
            initialise_prior(module, self.batch_rows(module, epoch), warm=True)

    @staticmethod
    def batch_rows(module: VaDETraining, epoch: int) -> np.ndarray:
        """The training rows of `gmm_batches` global batches (batch_size is per rank), drawn with
        the epoch's own seed, in row order."""
        train = module.config.train
        order = np.random.default_rng([train.seed, epoch]).permutation(len(module.data.train_rows))
        return np.sort(module.data.train_rows[order[: train.gmm_batches * train.batch_size * module.trainer.world_size]])

    def on_train_end(self, trainer: L.Trainer, module: VaDETraining) -> None:
        train = module.config.train
        if gmm_init_epoch(train) is None and not module.model.prior.initialised:
            initialise_prior(module, module.data.train_rows)
        elif (train.prior_update == "em" or train.final_refit) and module.model.prior.initialised:
            initialise_prior(module, module.data.train_rows, warm=True)


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
