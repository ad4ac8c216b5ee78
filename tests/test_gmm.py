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


def _moons(count: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles in 2-D: clusters that no pair of ellipsoids parts."""
    generator = np.random.default_rng(seed)
    angle = generator.uniform(0, np.pi, count)
    label = generator.integers(0, 2, count)
    points = np.where(label[:, None] == 0, np.c_[np.cos(angle), np.sin(angle)],
                      np.c_[1 - np.cos(angle), 0.5 - np.sin(angle)])
    return points + 0.05 * generator.normal(size=(count, 2)), label


def test_the_manifold_start_parts_curved_clusters_that_a_mixture_fitted_directly_splits():
    import torch
    from sklearn.metrics import adjusted_rand_score
    from astrovader.train.gmm import manifold_mixture

    points, label = _moons()
    direct = fit_gmm(points, 2, 0, "full").predict(points)
    threads = torch.get_num_threads()
    weights, means, covariances = manifold_mixture(points, 2, seed=0, covariance="full")
    assert torch.get_num_threads() == threads  # UMAP's numba must not change training's threads
    # Each component is one moon: its mean is that moon's mean, its weight that moon's share.
    order = np.argsort(means[:, 0])
    for component, moon in zip(order, (0, 1)):
        assert np.abs(means[component] - points[label == moon].mean(0)).max() < 0.05
        assert abs(weights[component] - np.mean(label == moon)) < 0.03
        assert np.allclose(covariances[component], np.cov(points[label == moon].T, bias=True), atol=0.02)
    assert adjusted_rand_score(label, direct) < 0.6  # what the default start makes of the same points
    again = manifold_mixture(points, 2, seed=0, covariance="diag")
    assert again[2].shape == (2, 2) and np.allclose(np.sort(again[1][:, 0]), means[order, 0])


def test_a_mixture_of_parts_is_one_m_step():
    from astrovader.train.gmm import mixture_of_parts

    embeddings = _blobs()
    fitted = fit_gmm(embeddings, 10, 0)
    weights, means, covariances = mixture_of_parts(embeddings, fitted.predict_proba(embeddings), "diag")
    # The M step of a converged fit gives the fit back.
    assert np.allclose(weights, fitted.weights_, atol=1e-3) and np.allclose(means, fitted.means_, atol=1e-2)
    assert np.allclose(covariances, fitted.covariances_, rtol=1e-2)
