"""Components against the simulation's truth (`astrovader simulate` writes truth.parquet), per
attribute: what the clusters follow, and what they should not.

Wanted high: the NMI against the morphology class (bulge-dominated, disk face-on, disk edge-on)
and against has-companion. Wanted low (a component that encodes them is a defect): the NMI
against the S/N, the flux and the position angle, each binned in deciles (position angle: ten
18-degree bins, it is uniform). Also each component's mean of every numeric attribute, and
what any features (pixels' principal components, an embedding) tell of each attribute linearly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import mutual_info_score, normalized_mutual_info_score

from astrovader.errors import InputError

WANTED = {"morphology": "morphology", "has_companion": "has_companion"}
UNWANTED = {"snr": "snr", "flux": "flux_e", "position_angle": "position_angle_deg"}
BINS = 10
# Attribute -> transform, for the linear read-out: sizes, fluxes and S/N span decades (logs).
LINEAR = {"snr": np.log, "flux_e": np.log, "bulge_to_total": None, "disk_axis_ratio": None,
          "disk_hlr_arcsec": np.log, "has_companion": None}
MEANS = ("bulge_to_total", "sersic_n", "disk_axis_ratio", "inclination_deg", "disk_hlr_arcsec", "snr", "flux_e",
         "n_companions", "psf_fwhm_arcsec")


def read_truth(path: str | Path, ids: np.ndarray) -> pd.DataFrame:
    """The truth rows of `ids`, in their order."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no truth table")
    truth = pd.read_parquet(path).set_index("id_str")
    missing = pd.Index(ids).difference(truth.index)
    if len(missing):
        raise InputError(f"{path}: no truth for {len(missing)} object(s), e.g. {missing[0]!r}")
    return truth.loc[list(ids)]


def binned(values: pd.Series, name: str) -> np.ndarray:
    """Deciles (position angles: equal 18-degree bins over [0, 180))."""
    if name == "position_angle":
        return (np.asarray(values, dtype=float) % 180 // (180 / BINS)).astype(int)
    return pd.qcut(values.rank(method="first"), BINS, labels=False).to_numpy()


def attribute_scores(components: np.ndarray, ids: np.ndarray, truth_path: str | Path) -> dict[str, float]:
    """NMI of the components against each wanted and unwanted attribute, and the mutual
    information (nats) against the unwanted ones."""
    truth = read_truth(truth_path, ids)
    components = np.asarray(components)
    scores = {f"nmi_{name}": normalized_mutual_info_score(truth[column], components) for name, column in WANTED.items()}
    for name, column in UNWANTED.items():
        bins = binned(truth[column], name)
        scores[f"nmi_{name}"] = normalized_mutual_info_score(bins, components)
        scores[f"mi_{name}"] = mutual_info_score(bins, components)
    return {name: round(float(value), 4) for name, value in scores.items()}


def component_means(components: np.ndarray, ids: np.ndarray, truth_path: str | Path) -> pd.DataFrame:
    """Per component: objects, the share of each morphology and of companions, and the mean of
    each numeric attribute (MEANS)."""
    truth = read_truth(truth_path, ids).reset_index(drop=True)
    truth["component"] = np.asarray(components)
    groups = truth.groupby("component")
    table = pd.DataFrame({"objects": groups.size()})
    for morphology in sorted(truth["morphology"].unique()):
        table[morphology] = groups["morphology"].apply(lambda values, m=morphology: float((values == m).mean()))
    table["with companion"] = groups["has_companion"].mean()
    for column in MEANS:
        if column in truth:
            table[column] = groups[column].mean()
    return table


def linear_information(train_features: np.ndarray, train_ids: np.ndarray, test_features: np.ndarray,
                       test_ids: np.ndarray, truth_path: str | Path) -> dict[str, float]:
    """Held-out R^2 of a ridge regression from the features to each LINEAR attribute: how much of
    it a linear read-out finds (wanted for morphology and companions, a defect for S/N and
    flux). 0 or below: nothing."""
    from sklearn.linear_model import Ridge

    train, test = read_truth(truth_path, train_ids), read_truth(truth_path, test_ids)
    scores = {}
    for column in LINEAR:
        fitted = Ridge(alpha=1e-3).fit(train_features, _linear_target(train, column))
        scores[f"r2_{column}"] = round(float(fitted.score(test_features, _linear_target(test, column))), 4)
    return scores


def _linear_target(truth: pd.DataFrame, column: str) -> np.ndarray:
    values = truth[column].to_numpy(dtype=float)
    return values if LINEAR[column] is None else LINEAR[column](values)
