"""Gaussian-mixture fits on embeddings: the s3VDC mini-batch initialisation (C20), the EM
updates of the prior during joint training, and the two-stage baseline (Cheng et al. 2020)
share `fit_gmm`; `manifold_mixture` is the alternative start that parts the embeddings on their
UMAP manifold first (N2D, McConville et al. 2020)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

# k-means seeds tried; the fit of highest likelihood is kept. One seed's GMM on a fixed
# embedding ranged 52-55 % accuracy on Fashion-MNIST; ten agree to 0.01 point.
GMM_RESTARTS = 10
REG_COVAR = 1e-6  # added to every covariance's diagonal, by scikit-learn's fits and by warm starts


def precisions_of(covariances: np.ndarray) -> np.ndarray:
    """Inverse covariances that scikit-learn accepts as a warm start: a full covariance made from
    a float32 prior can be so badly conditioned that its plain inverse is not symmetric to
    scikit-learn's tolerance, so it is symmetrised, regularised as the fits are, and inverted
    through its Cholesky factor."""
    if covariances.ndim == 2:
        return 1.0 / covariances
    dimension = covariances.shape[-1]
    symmetric = (covariances + covariances.swapaxes(-1, -2)) / 2 + REG_COVAR * np.eye(dimension)
    inverse_factor = np.linalg.inv(np.linalg.cholesky(symmetric))
    precisions = inverse_factor.swapaxes(-1, -2) @ inverse_factor
    return (precisions + precisions.swapaxes(-1, -2)) / 2


def fit_gmm(embeddings: np.ndarray, n_components: int, seed: int, covariance: str = "diag",
            restarts: int = GMM_RESTARTS, start: tuple[np.ndarray, ...] | None = None) -> GaussianMixture:
    """A GaussianMixture (diagonal, as the paper and C20 use, or full) seeded by k-means, the
    best of `restarts` starts; or, given `start` = (weights, means, covariances), EM from that
    mixture, so that every component keeps its identity."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if len(embeddings) < n_components:
        raise ValueError(f"{len(embeddings)} embeddings cannot initialise {n_components} components")
    warm = {}
    if start is not None:
        weights, means, covariances = (np.asarray(value, dtype=np.float64) for value in start)
        warm = {"weights_init": weights / weights.sum(), "means_init": means, "precisions_init": precisions_of(covariances)}
        restarts = 1
    mixture = GaussianMixture(
        n_components=n_components, covariance_type=covariance, init_params="kmeans",
        random_state=seed, reg_covar=REG_COVAR, max_iter=200, n_init=restarts, **warm,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(embeddings)
    return mixture


def manifold_mixture(embeddings: np.ndarray, n_components: int, seed: int, covariance: str = "diag",
                     neighbours: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, means, covariances) of a mixture of the embeddings whose components are the
    parts of their UMAP manifold: UMAP maps them to n_components dimensions (min_dist 0, so that
    clusters stay tight), a full GaussianMixture parts the map (N2D's read-out), and each part's
    share, mean and covariance of the embeddings themselves (not of the map) make the mixture.
    Where the embeddings' clusters are curved, a mixture fitted to them directly splits and merges
    what the manifold keeps apart; the start keeps the manifold's parts."""
    import umap  # numba compiles on first use: only runs that ask for this start pay for it

    embeddings = np.asarray(embeddings, dtype=np.float64)
    if len(embeddings) <= neighbours:
        raise ValueError(f"{len(embeddings)} embeddings are too few for a UMAP manifold of {neighbours} neighbours")
    threads = torch.get_num_threads()
    try:  # UMAP's numba and pynndescent change torch's thread count: training keeps its own
        manifold = umap.UMAP(n_components=n_components, n_neighbors=neighbours, min_dist=0.0,
                             n_jobs=1, random_state=seed).fit_transform(embeddings)
    finally:
        torch.set_num_threads(threads)
    parts = fit_gmm(manifold, n_components, seed, "full", restarts=3).predict_proba(manifold)
    return mixture_of_parts(embeddings, parts, covariance)


def mixture_of_parts(embeddings: np.ndarray, parts: np.ndarray, covariance: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixture whose component c has the weight, mean and covariance of the embeddings
    weighted by column c of `parts` (N, K) (one M step of EM; covariances regularised as the fits)."""
    totals = parts.sum(0) + 10 * np.finfo(float).eps
    means = parts.T @ embeddings / totals[:, None]
    centred = embeddings[None] - means[:, None]  # (K, N, J)
    if covariance == "diag":
        covariances = np.einsum("nk,knj->kj", parts, centred**2) / totals[:, None] + REG_COVAR
    else:
        covariances = np.einsum("nk,kni,knj->kij", parts, centred, centred) / totals[:, None, None]
        covariances += REG_COVAR * np.eye(embeddings.shape[1])
    return totals / totals.sum(), means, covariances
