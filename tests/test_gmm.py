"""The Gaussian-mixture fit shared by the s3VDC initialisation and the two-stage baseline."""

import numpy as np
from astrovader.train.gmm import fit_gmm


def _blobs(seed: int = 0) -> np.ndarray:
    """Ten blobs of unequal sizes and spreads in 10-D: a k-means start often merges two."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(scale=4.0, size=(10, 10))
    sizes = generator.integers(50, 400, size=10)
    spreads = generator.uniform(0.3, 1.5, size=10)
    return np.concatenate([c + s * generator.normal(size=(n, 10)) for c, n, s in zip(centres, sizes, spreads)])


def test_restarts_make_the_fit_independent_of_the_seed_and_at_least_as_good_as_one_start():
    embeddings = _blobs()
    fits = [fit_gmm(embeddings, 10, seed) for seed in range(4)]
    bounds = [fit.lower_bound_ for fit in fits]
    assert max(bounds) - min(bounds) < 1e-6, bounds
    single = [fit_gmm(embeddings, 10, seed, restarts=1).lower_bound_ for seed in range(4)]
    assert min(bounds) >= max(single) - 1e-9
    assert max(single) - min(single) > 1e-3  # the data really has local optima for one start
    assert all(fit.covariance_type == "diag" and fit.converged_ for fit in fits)


def test_a_warm_start_from_a_badly_conditioned_float32_covariance_is_accepted():
    """A full prior stored in float32 can be nearly singular (two latents almost collinear): EM
    must still start from it, as train.final_refit and train.prior_update: em do."""
    generator = np.random.default_rng(0)
    embeddings = generator.normal(size=(2000, 10))
    embeddings[:, 3] = embeddings[:, 2] + 1e-6 * generator.normal(size=2000)
    embeddings[:, 5] = 2 * embeddings[:, 4] + 1e-6 * generator.normal(size=2000)
    first = fit_gmm(embeddings, 3, 0, "full")
    factor = np.linalg.cholesky(first.covariances_).astype(np.float32)
    stored = factor @ factor.transpose(0, 2, 1)  # as the prior's covariances() in float32
    again = fit_gmm(embeddings, 3, 0, "full", start=(first.weights_, first.means_, stored))
    assert again.converged_ and np.abs(again.means_ - first.means_).max() < 0.05
