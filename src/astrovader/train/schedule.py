"""The s3VDC schedule (paper Table 1, eqs. 14-16) as a pure function of the epoch.

Epochs are counted from 0. With T_alpha alpha-epochs, then M periods of T_beta annealing and
T_s static epochs:
    alpha phase   epochs [0, T_alpha):  L = L_recon + alpha KL(q || N(0, I))            (eq. 14)
    GMM init      before epoch T_alpha (mini-batch GaussianMixture on mu_z)
    annealing     epoch e in period m:  L = L_recon + w (beta^u + alpha) KL_VaDE        (eq. 15)
                  beta = (e - start_m + 1) / T_beta, reaching 1 at the period's last annealing epoch
    static        L = L_recon + w KL_VaDE                                                (eq. 16)
where w is the extra mixture-KL weight (0.3 in the paper, section 4.1), plus in every phase the
L2 penalty on the weights, train.l2 times its sum of squares. The two-stage baseline trains a
plain autoencoder for the same number of epochs and fits the mixture afterwards.

A step takes every loss weight from its epoch's Phase, nothing from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from astrovader.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    name: str  # "alpha", "anneal", "static" or "autoencoder"
    period: int  # 0 for the alpha phase, 1..M for annealing/static periods
    kl_normal_weight: float
    kl_mixture_weight: float  # including the extra mixture-KL weight
    learning_rate: float
    l2_weight: float


def phase_at(epoch: int, train: TrainConfig) -> Phase:
    if not 0 <= epoch < train.total_epochs:
        raise ValueError(f"epoch {epoch} outside the schedule's {train.total_epochs} epochs")
    learning_rate, l2 = learning_rate_at(epoch, train), train.l2
    if train.method == "two_stage":
        return Phase("autoencoder", 0, 0.0, 0.0, learning_rate, l2)
    if epoch < train.alpha_epochs:
        if train.pretrain == "autoencoder":
            return Phase("autoencoder", 0, 0.0, 0.0, learning_rate, l2)
        return Phase("alpha", 0, train.alpha, 0.0, learning_rate, l2)
    period_length = train.anneal_epochs + train.static_epochs
    period, offset = divmod(epoch - train.alpha_epochs, period_length)
    if offset < train.anneal_epochs:
        beta = (offset + 1) / train.anneal_epochs
        weight = beta**train.anneal_power + train.alpha
        return Phase("anneal", period + 1, 0.0, train.mixture_kl_weight * weight, learning_rate, l2)
    return Phase("static", period + 1, 0.0, train.mixture_kl_weight, learning_rate, l2)


def learning_rate_at(epoch: int, train: TrainConfig) -> float:
    """Exponential decay from `learning_rate` to `final_learning_rate` at the last epoch, in
    steps every `lr_decay_every` epochs (the paper decays every five epochs)."""
    steps = (train.total_epochs - 1) // train.lr_decay_every
    if steps == 0:
        return train.learning_rate
    fraction = (epoch // train.lr_decay_every) / steps
    return train.learning_rate * (train.final_learning_rate / train.learning_rate) ** fraction


def gmm_init_epoch(train: TrainConfig) -> int | None:
    """The epoch before which the mixture is fitted (None: the two-stage baseline fits after)."""
    return None if train.method == "two_stage" else train.alpha_epochs
