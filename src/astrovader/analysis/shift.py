"""Inputs unlike the training set: each input's log-likelihood under the mixture and its
reconstruction error, placed among those of the training split (stored with the model at the
end of training), an `ood` flag, and a warning when many inputs look unlike the training data
or one component takes most of them (other pixel scale, crop, stretch, survey...).

An input is flagged when its log-likelihood is below the training split's 1st percentile or its
MSE above the 99th: about 2 % of inputs like the training data are flagged by chance.
"""

from __future__ import annotations

import numpy as np

from astrovader.data.loader import evenly_spread

PERCENTILES = np.linspace(0, 100, 101)
LOW_LIKELIHOOD, HIGH_MSE = 1.0, 99.0  # percentiles of the training split beyond which an input is flagged
EXPECTED_SHARE = (LOW_LIKELIHOOD + 100 - HIGH_MSE) / 100
WARN_SHARE = 0.10  # five times the chance rate
CROWDED = 0.8  # one component takes this share of the inputs...
CROWDED_TRAINING = 0.5  # ...but held less than this share of the training split
REFERENCE_ROWS = 10_000  # training rows measured at the end of training (evenly spread)
ADVICE = "check the pixel scale, crop and stretch against the model's preprocessing (model.json)"
FIELD_RATIO = 1.25  # fields of view further apart than this are worth a warning of their own


def training_reference(outputs: dict[str, np.ndarray]) -> dict:
    """What `flag` compares inputs with: percentiles 0..100 of the training split's
    log-likelihood and MSE, and its share in each component (from `model_outputs`)."""
    components = outputs["gamma"].argmax(axis=1)
    shares = np.bincount(components, minlength=outputs["gamma"].shape[1]) / max(len(components), 1)
    return {
        "rows": int(len(components)),
        "log_likelihood_percentiles": np.percentile(outputs["log_likelihood"], PERCENTILES).round(6).tolist(),
        "mse_percentiles": np.percentile(outputs["mse"], PERCENTILES).round(9).tolist(),
        "component_shares": shares.round(6).tolist(),
    }


def reference_rows(rows: np.ndarray) -> np.ndarray:
    """At most REFERENCE_ROWS of the training rows, evenly spread."""
    return evenly_spread(rows, REFERENCE_ROWS)


def quantile(values: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """Where each value falls among the training split's, in [0, 1] (NaN stays NaN)."""
    table = np.asarray(percentiles, dtype=np.float64)
    # np.interp needs increasing x: ties (e.g. a constant MSE) keep the first percentile.
    unique, first = np.unique(table, return_index=True)
    placed = np.interp(np.asarray(values, dtype=np.float64), unique, PERCENTILES[first] / 100.0)
    return np.where(np.isnan(values), np.nan, placed)


def flag(log_likelihood_quantile: np.ndarray, mse_quantile: np.ndarray) -> np.ndarray:
    """True where an input is below the 1st percentile of likelihood or above the 99th of MSE."""
    low = log_likelihood_quantile < LOW_LIKELIHOOD / 100
    high = mse_quantile > HIGH_MSE / 100
    return np.nan_to_num(low | high, nan=False).astype(bool)


def shift_columns(log_likelihood: np.ndarray, mse: np.ndarray, reference: dict | None) -> dict[str, np.ndarray]:
    """log_likelihood_quantile, mse_quantile and ood of each input, against the training reference."""
    if reference is None:
        missing = np.full(len(mse), np.nan, dtype=np.float32)
        return {"log_likelihood_quantile": missing, "mse_quantile": missing, "ood": np.zeros(len(mse), dtype=bool)}
    likelihood = quantile(log_likelihood, reference["log_likelihood_percentiles"])
    error = quantile(mse, reference["mse_percentiles"])
    return {"log_likelihood_quantile": likelihood, "mse_quantile": error, "ood": flag(likelihood, error)}


def describe_geometry(geometry: dict | None) -> str:
    """'424 px at 0.396 arcsec/px (168 arcsec across)', or as much of it as is known."""
    if not geometry or geometry.get("side_px") is None:
        return "of unknown size"
    text = f"{geometry['side_px']:.0f} px"
    if geometry.get("pixscale_arcsec") is not None:
        text += f" at {geometry['pixscale_arcsec']:.3g} arcsec/px ({geometry['field_arcsec']:.3g} arcsec across)"
    return text


def shift_report(components: np.ndarray, ood: np.ndarray, reference: dict | None,
                 training_inputs: dict | None = None, inputs: dict | None = None) -> dict:
    """Shares flagged and in the largest component, and a warning (None when the inputs look
    like the training data). `components`: -1 for inputs that could not be read (left out).
    `training_inputs`, `inputs`: the `data.cache.input_geometry` of both, when known."""
    readable = np.asarray(components) >= 0
    count = int(readable.sum())
    if reference is None or count == 0:
        note = "the model stores no training reference (trained with an older version)" if reference is None else None
        return {"inputs": count, "flagged": None, "warning": None, "note": note}
    flagged = float(np.asarray(ood)[readable].mean())
    counts = np.bincount(np.asarray(components)[readable], minlength=len(reference["component_shares"]))
    largest = int(counts.argmax())
    share, training_share = float(counts[largest] / count), float(reference["component_shares"][largest])
    reasons = []
    if flagged >= WARN_SHARE:
        reasons.append(f"{flagged:.0%} of them are flagged (log-likelihood below the training split's "
                       f"{LOW_LIKELIHOOD:g}st percentile or MSE above its {HIGH_MSE:g}th; by chance: {EXPECTED_SHARE:.0%})")
    if share >= CROWDED and training_share < CROWDED_TRAINING:
        reasons.append(f"{share:.0%} fall in component {largest} (it holds {training_share:.0%} of the training split)")
    fields = [(geometry or {}).get("field_arcsec") for geometry in (training_inputs, inputs)]
    if None not in fields and max(fields) > FIELD_RATIO * min(fields):
        reasons.append(f"their field is {fields[1]:.3g} arcsec across, the training inputs' {fields[0]:.3g}")
    warning = None
    if reasons:
        warning = f"these {count} inputs look unlike the training data: {'; '.join(reasons)}; {ADVICE}"
        if training_inputs or inputs:
            warning += (f" (the model was trained on inputs {describe_geometry(training_inputs)}; these are "
                        f"{describe_geometry(inputs)})")
    return {"inputs": count, "flagged": flagged, "largest_component": largest, "largest_share": share,
            "largest_training_share": training_share, "warning": warning, "note": None}
