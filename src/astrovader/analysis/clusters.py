"""The mixture seen through its members (paper section 5.2): Table 2, the overlap matrix of
Fig. 5, re-labelling within a subset of components (Fig. 8), gallery members (Figs. 6-7) and
a 2-D map of the latent space.

Every function takes plain arrays: mu (N, J) and gamma (N, K) come from a predictions table
or straight from `model.inference.model_outputs`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrovader.analysis.metrics import calinski_harabasz, overall_silhouette, simplified_silhouette
from astrovader.errors import AstroVaDErError

GAMMA_THRESHOLDS = (0.1, 0.3, 0.5)


def component_table(mu: np.ndarray, gamma: np.ndarray, thresholds=GAMMA_THRESHOLDS) -> pd.DataFrame:
    """Table 2: per component, the objects whose most probable component it is, the objects
    with gamma_c above each threshold (an object may count in several components), and the
    mean simplified silhouette (eq. 18, per sample) of its members."""
    components = gamma.argmax(axis=1)
    count = gamma.shape[1]
    silhouette = pd.Series(simplified_silhouette(mu, components)).groupby(components).mean()
    table = pd.DataFrame({"objects": np.bincount(components, minlength=count)}, index=pd.RangeIndex(count, name="component"))
    for threshold in thresholds:
        table[f"gamma > {threshold:g}"] = (gamma > threshold).sum(axis=0)
    table["silhouette"] = silhouette.reindex(table.index)
    return table


def cluster_scores(mu: np.ndarray, components: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Label-free scores on mu_z: mean simplified silhouette, Rousseeuw's silhouette, CH."""
    return {
        "components_used": int(len(np.unique(components))),
        "simplified_silhouette": float(simplified_silhouette(mu, components).mean()) if len(mu) else float("nan"),
        "silhouette": overall_silhouette(mu, components, seed=seed),
        "calinski_harabasz": calinski_harabasz(mu, components),
    }


def overlap_matrix(gamma: np.ndarray) -> pd.DataFrame:
    """Fig. 5: row i, column j = mean gamma_j over the objects whose top component is i
    (NaN rows for components that are nobody's top)."""
    components = gamma.argmax(axis=1)
    count = gamma.shape[1]
    means = pd.DataFrame(gamma).groupby(components).mean().reindex(range(count))
    means.index.name, means.columns.name = "top component", "component"
    return means


def parse_subset(text: str | None, n_components: int) -> list[int] | None:
    """'0,3,5' -> [0, 3, 5], checked against the model's components (None stays None)."""
    if text is None or not text.strip():
        return None
    try:
        subset = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise AstroVaDErError(f"--subset {text!r}: expected component numbers separated by commas, e.g. 0,3,5") from None
    outside = [component for component in subset if not 0 <= component < n_components]
    if outside or len(set(subset)) != len(subset) or len(subset) < 1:
        raise AstroVaDErError(
            f"--subset {text!r}: give distinct components between 0 and {n_components - 1}"
        )
    return sorted(subset)


def assignments(gamma: np.ndarray, subset: list[int] | None = None) -> np.ndarray:
    """Each object's most probable component, among `subset` only when given (Fig. 8, 5.4)."""
    if subset is None:
        return gamma.argmax(axis=1)
    return np.asarray(subset)[gamma[:, subset].argmax(axis=1)]


def most_probable_members(gamma: np.ndarray, labels: np.ndarray | None = None, per_component: int = 1,
                          components: list[int] | None = None) -> dict[int, np.ndarray]:
    """Per component c, the positions of up to `per_component` objects labelled c (by default:
    whose most probable component is c) in decreasing gamma_c, ties in position order; empty
    for a component nobody is labelled with."""
    labels = gamma.argmax(axis=1) if labels is None else labels
    chosen = {}
    for component in components if components is not None else range(gamma.shape[1]):
        members = np.flatnonzero(labels == component)
        chosen[component] = members[np.argsort(-gamma[members, component], kind="stable")][:per_component]
    return chosen


def gallery_members(gamma: np.ndarray, labels: np.ndarray, per_component: int, seed: int,
                    components: list[int] | None = None) -> dict[str, dict[int, np.ndarray]]:
    """Positions of up to `per_component` objects per component: 'random' members (seeded) and
    the 'most probable' members (highest gamma_c among those labelled c)."""
    rng = np.random.default_rng(seed)
    best = most_probable_members(gamma, labels, per_component, components)
    random = {component: np.sort(rng.choice(np.flatnonzero(labels == component), len(top), replace=False))
              for component, top in best.items()}
    return {"random": random, "most probable": best}


def latent_map(mu: np.ndarray, seed: int = 0, max_points: int = 3000) -> tuple[np.ndarray, np.ndarray, str]:
    """(positions, 2-D coordinates, method) for a seeded subsample of mu: scikit-learn's t-SNE,
    the paper's map (its section 4)."""
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(len(mu), min(max_points, len(mu)), replace=False))
    points = np.asarray(mu[positions], dtype=np.float64)
    if len(points) < 5:
        raise AstroVaDErError(f"latent map: {len(points)} objects are too few for a 2-D map (need 5)")
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(30.0, (len(points) - 1) / 3)
    # One OpenMP thread: on shared cores the Barnes-Hut gradient's threads ran 6-12x slower.
    with threadpool_limits(1):
        coordinates = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    return positions, coordinates, "t-SNE"
