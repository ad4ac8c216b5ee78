"""Clustering scores against labels (accuracy with Hungarian matching, NMI, ARI, purity) and
the label-free ones of the paper (simplified silhouette eq. 18, Calinski-Harabasz)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, normalized_mutual_info_score


def contingency(labels: np.ndarray, clusters: np.ndarray) -> pd.DataFrame:
    """Class x component counts."""
    return pd.crosstab(pd.Series(labels, name="class"), pd.Series(clusters, name="component"))


def hungarian_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of components to classes (VaDE's ACC)."""
    table = contingency(labels, clusters).to_numpy()
    rows, columns = linear_sum_assignment(-table)
    return float(table[rows, columns].sum() / len(labels))


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of objects in their component's majority class."""
    return float(contingency(labels, clusters).max(axis=0).sum() / len(labels))


def component_purity(labels: np.ndarray, clusters: np.ndarray) -> pd.DataFrame:
    """Per component: size, majority class and the fraction of members in it."""
    table = contingency(labels, clusters)
    return pd.DataFrame({
        "size": table.sum(axis=0),
        "majority_class": table.idxmax(axis=0),
        "purity": table.max(axis=0) / table.sum(axis=0),
    })


def label_scores(labels: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    return {
        "accuracy": hungarian_accuracy(labels, clusters),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "purity": purity(labels, clusters),
    }


def simplified_silhouette(embeddings: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Eq. 18 per sample. "Simplified" silhouette (Hruschka et al. 2004, as C20 use): a(i) is
    the distance from i to its own component's centroid and b(i) the smallest distance from i
    to another component's centroid, taken FOR EACH SAMPLE (the public code took one global
    minimum for b). With fewer than two components every score is 0. The full silhouette
    (mean pairwise distances) is `overall_silhouette`."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    present = np.unique(clusters)
    if len(present) < 2:
        return np.zeros(len(embeddings))
    centroids = np.stack([embeddings[clusters == c].mean(0) for c in present])
    distances = np.linalg.norm(embeddings[:, None, :] - centroids[None], axis=-1)  # (N, C)
    own = np.searchsorted(present, clusters)
    a = distances[np.arange(len(embeddings)), own]
    distances[np.arange(len(embeddings)), own] = np.inf
    b = distances.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(a < b, 1 - a / b, np.where(a > b, b / a - 1, 0.0))
    return np.nan_to_num(score)


def overall_silhouette(embeddings: np.ndarray, clusters: np.ndarray, sample_size: int = 10_000, seed: int = 0) -> float:
    """Rousseeuw's silhouette over all samples (a seeded subsample of at most `sample_size`)."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(clusters)) < 2:
        return float("nan")
    size = min(sample_size, len(embeddings))
    return float(silhouette_score(embeddings, clusters, sample_size=size, random_state=seed))


def calinski_harabasz(embeddings: np.ndarray, clusters: np.ndarray) -> float:
    if len(np.unique(clusters)) < 2:
        return float("nan")
    return float(calinski_harabasz_score(embeddings, clusters))


def class_best_components(labels: np.ndarray, clusters: np.ndarray, min_size: int = 1) -> pd.DataFrame:
    """Per class: its size and share of all objects, the purest component for it among those
    with at least `min_size` members (a one-object component is trivially pure), that purity,
    the component's size and the fraction of the class it holds."""
    table = contingency(labels, clusters)
    sizes, class_sizes = table.sum(axis=0), table.sum(axis=1)
    candidates = table.loc[:, sizes >= min_size] if (sizes >= min_size).any() else table
    shares = candidates / candidates.sum(axis=0)  # fraction of each component's members in each class
    best = shares.idxmax(axis=1)
    return pd.DataFrame({
        "size": class_sizes,
        "share": class_sizes / sizes.sum(),
        "best_component": best,
        "purity": shares.max(axis=1),
        "component_size": sizes[best].to_numpy(),
        "completeness": [table.loc[name, component] / class_sizes[name] for name, component in best.items()],
    })


def majority_capture(labels: np.ndarray, clusters: np.ndarray, wanted, min_purity: float = 0.9) -> dict[str, float]:
    """How components gather one class (issue 20's GZ1 criteria): the share of the class that
    falls in components where it is the majority (`completeness`, with those components' purity
    `majority_purity`); and, taking the class's components purest first while their members
    stay at least `min_purity` of the class, the largest share of it such a set holds
    (`pure_completeness`, 0 when no component is that pure)."""
    table = contingency(labels, clusters)
    if wanted not in table.index:
        raise ValueError(f"class {wanted!r} not among the labels")
    members, sizes = table.loc[wanted], table.sum(axis=0)
    majority = table.idxmax(axis=0) == wanted
    completeness = float(members[majority].sum() / members.sum())
    majority_purity = float(members[majority].sum() / sizes[majority].sum()) if majority.any() else 0.0
    order = (members / sizes).sort_values(ascending=False).index
    held, total = members[order].cumsum().to_numpy(), sizes[order].cumsum().to_numpy()
    pure = np.flatnonzero(held / total >= min_purity)  # purest first: the pure sets are a prefix
    pure_completeness = float(held[pure.max()] / members.sum()) if pure.size else 0.0
    return {"completeness": completeness, "majority_purity": majority_purity, "pure_completeness": pure_completeness}
