"""Choosing K (paper section 4.1): a Dirichlet-process BayesianGaussianMixture, with many more
components than expected, fitted to many mini-batches of embeddings; the excess components
get negligible weight. The number left per fit, its spread over fits and the recommended K.

Covariances are diagonal, like the model's prior (a full-covariance fit is ~100x slower on a
CPU and changes the count little).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture
from threadpoolctl import threadpool_limits

from astrovader.atomic import write_json_atomic
from astrovader.errors import AstroVaDErError


@dataclass
class ChooseK:
    counts: np.ndarray  # components above the threshold, per fit
    weights: list[np.ndarray]  # each fit's weights, sorted in decreasing order
    converged: np.ndarray  # per fit
    threshold: float
    batch_size: int
    max_components: int
    seed: int

    @property
    def median(self) -> float:
        return float(np.median(self.counts))

    @property
    def recommended(self) -> int:
        """The most frequent count; ties go to the one nearest the median, then the smaller."""
        values, frequencies = np.unique(self.counts, return_counts=True)
        modes = values[frequencies == frequencies.max()]
        return int(min(modes, key=lambda k: (abs(k - self.median), k)))

    def distribution(self) -> pd.DataFrame:
        """K -> number and fraction of fits that kept exactly K components."""
        table = pd.Series(self.counts).value_counts().sort_index().rename("fits").to_frame()
        table.index.name = "K"
        table["fraction"] = table["fits"] / len(self.counts)
        return table

    def to_dict(self) -> dict:
        return {
            "recommended_k": self.recommended,
            "median_k": self.median,
            "counts": self.counts.tolist(),
            "distribution": {int(k): int(n) for k, n in self.distribution()["fits"].items()},
            "fits": len(self.counts),
            "converged": int(self.converged.sum()),
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "max_components": self.max_components,
            "seed": self.seed,
            "weights": [weights.round(6).tolist() for weights in self.weights],
        }

    def summary(self) -> str:
        return (
            f"recommended K = {self.recommended} (median {self.median:g}, range {self.counts.min()}-{self.counts.max()}) "
            f"from {len(self.counts)} fits of {self.batch_size} embeddings, weight > {self.threshold:g}"
        )


def check_settings(fits: int, batch_size: int, max_components: int, threshold: float) -> None:
    if fits < 1:
        raise AstroVaDErError(f"--fits {fits}: need at least one fit")
    if max_components < 2:
        raise AstroVaDErError(f"--max-components {max_components}: need at least 2")
    if batch_size < max_components:
        raise AstroVaDErError(f"--batch-size {batch_size}: must be at least --max-components ({max_components})")
    if not 0 < threshold < 1:
        raise AstroVaDErError(f"--threshold {threshold}: must lie between 0 and 1 (a weight)")


def draw_batches(pool: int, fits: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Per fit, a seeded random batch of positions in [0, pool) (the whole pool if smaller)."""
    size = min(batch_size, pool)
    return [np.sort(np.random.default_rng([seed, fit]).choice(pool, size, replace=False)) for fit in range(fits)]


def fit_batches(batches: list[np.ndarray], max_components: int = 30, threshold: float = 0.01, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> ChooseK:
    """One Dirichlet-process mixture per batch of embeddings (fit i seeded with seed + i)."""
    if min(len(batch) for batch in batches) < max_components:
        raise AstroVaDErError(
            f"choose-k: {min(len(batch) for batch in batches)} embeddings per batch are fewer than "
            f"--max-components {max_components}; use more data or fewer components"
        )
    weights, converged = [], []
    for fit, batch in enumerate(batches):
        mixture = BayesianGaussianMixture(
            n_components=max_components, covariance_type="diag", max_iter=500, random_state=seed + fit,
            weight_concentration_prior_type="dirichlet_process", init_params="kmeans",
        )
        # One BLAS thread: on shared cores, threaded BLAS on these small matrices ran 9x slower.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            mixture.fit(np.asarray(batch, dtype=np.float64))
        weights.append(np.sort(mixture.weights_)[::-1])
        converged.append(mixture.converged_)
        if progress is not None:
            progress(fit + 1, len(batches))
    counts = np.array([int((fit_weights > threshold).sum()) for fit_weights in weights])
    return ChooseK(counts, weights, np.array(converged), threshold, max(len(b) for b in batches), max_components, seed)


def choose_k(embeddings: np.ndarray, fits: int = 20, batch_size: int = 2000, max_components: int = 30,
             threshold: float = 0.01, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> ChooseK:
    """Fit `fits` Dirichlet-process mixtures to random batches of `embeddings` (N, J)."""
    check_settings(fits, batch_size, max_components, threshold)
    embeddings = np.asarray(embeddings)
    batches = draw_batches(len(embeddings), fits, batch_size, seed)
    return fit_batches([embeddings[batch] for batch in batches], max_components, threshold, seed, progress)


def choose_k_for_run(run_dir: str | Path, data: str | Path | None = None, split: str = "train", fits: int = 20,
                     batch_size: int = 2000, max_components: int = 30, threshold: float = 0.01, seed: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> ChooseK:
    """choose_k on mu_z of a cache split (the run's own cache by default), encoding only the
    rows that the drawn batches use."""
    from astrovader.analysis.objects import encode_rows
    from astrovader.runs import RunFolder

    check_settings(fits, batch_size, max_components, threshold)
    run = RunFolder(run_dir).open()
    cache = run.cache(data)
    if cache is None:
        raise AstroVaDErError(f"{run_dir}: the run records no prepared cache; give DATA (a cache folder)")
    rows = cache.split(split)["row"].to_numpy()
    batches = draw_batches(len(rows), fits, batch_size, seed)
    used = np.unique(np.concatenate(batches))
    mu = encode_rows(run.model, cache, rows[used])["mu"]
    return fit_batches([mu[np.searchsorted(used, batch)] for batch in batches], max_components, threshold, seed, progress)


def write_choose_k(result: ChooseK, out: str | Path) -> tuple[Path, Path]:
    """out/choose_k.json and out/choose_k.png (the histogram of counts over fits)."""
    from astrovader.analysis.figures import count_histogram, save_figure

    out = Path(out)
    json_path = write_json_atomic(out / "choose_k.json", result.to_dict())
    png_path = out / "choose_k.png"
    save_figure(count_histogram(result.counts, result.recommended, result.threshold), png_path)
    return json_path, png_path
