"""What the pixels allow: a small supervised CNN trained on the benchmark's training rows WITH
their labels, scored on the held-out rows as the clusterings are (accuracy, NMI; on the simulated
galaxies also the NMI against each truth attribute). No unsupervised method is expected to reach
it; a target above it cannot be met on these pixels. On GZ1 the record also gives issue 20's
criteria for the CNN's classes taken as components, and the share of the ellipticals that the
galaxies the CNN finds most likely elliptical hold at >= 90 % purity: components are sets of
galaxies, so no clustering's set does better than a ranking as good as the CNN's. On the
simulated galaxies, `--truth` adds
the unsupervised ceiling: a GaussianMixture (K = the classes) fitted not to pixels but to the
simulation's own parameters of the training rows, those that define the classes and then those
plus the ones that do not (size, S/N, flux), scored on the held-out rows: how far a clustering
can follow the class cuts even with perfect features.

    python -m benchmarks.ceiling DATASET [--seed 0] [--epochs 15] [--set KEY=VALUE ...] [--truth]

--set changes the pixels as in benchmarks.probe (e.g. data.scaling=asinh). Records go to
results/probes/ceiling-<DATASET>-seed<N>[-<overrides>].json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from astrovader.analysis.metrics import label_scores
from astrovader.data.cache import Cache
from benchmarks.clustering import datasets, methods
from benchmarks.clustering.records import gz1_capture, gz1_class_codes
from benchmarks.common import write_result
from benchmarks.probe import DATASETS, dataset, parse_overrides

BATCH = 64


def classifier(side: int, channels: int, classes: int) -> nn.Module:
    """Three [conv 3x3, ReLU, 2x2 max-pool] blocks of 32 filters, then 64 hidden units."""
    blocks: list[nn.Module] = []
    for fan_in in (channels, 32, 32):
        blocks += [nn.Conv2d(fan_in, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(32 * (side // 8) ** 2, 64), nn.ReLU(), nn.Linear(64, classes))


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) from the cache -> float in [0, 1]."""
    return torch.as_tensor(np.asarray(pixels)).float() / 255


def fit_predict(train: torch.Tensor, labels: torch.Tensor, test: torch.Tensor, classes: int, epochs: int,
                seed: int) -> np.ndarray:
    """The trained CNN's class probabilities (N, classes) for the test images."""
    torch.manual_seed(seed)
    network = classifier(train.shape[-1], train.shape[1], classes)
    optimiser = torch.optim.Adam(network.parameters(), 1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(train)).split(BATCH):
            images = train[batch].flip(-1) if torch.rand(1) < 0.5 else train[batch]
            loss = nn.functional.cross_entropy(network(images), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        return torch.cat([network(block).softmax(1) for block in test.split(1024)]).numpy()


def ranked_capture(is_class: np.ndarray, score: np.ndarray, min_purity: float) -> float:
    """The largest share of a class that the galaxies ranked highest by `score` hold while they
    stay at least `min_purity` of that class."""
    members = is_class[np.argsort(-score, kind="stable")]
    held = np.cumsum(members)
    pure = np.flatnonzero(held / np.arange(1, len(members) + 1) >= min_purity)
    return float(held[pure.max()] / members.sum()) if pure.size else 0.0


def gz1_ceiling(data, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Issue 20's criteria for the CNN's classes as components, and the ellipticals' by ranking."""
    elliptical = gz1_class_codes(data)["elliptical"]
    record = gz1_capture(data, labels, probabilities.argmax(1))
    record["ellipticals_at_90_percent_purity_ranked"] = round(
        ranked_capture(labels == elliptical, probabilities[:, elliptical], 0.9), 4)
    return record


# The parameters that define the simulated classes, and the ones that vary inside every class.
CLASS_PARAMETERS = ("bulge_to_total", "inclination_deg", "n_companions")
NUISANCE_PARAMETERS = ("disk_hlr_arcsec", "bulge_hlr_arcsec", "snr", "flux_e")


def truth_mixtures(truth_path, train_ids: np.ndarray, test_ids: np.ndarray, test_labels: np.ndarray,
                   classes: int, seed: int) -> dict:
    """Held-out NMI of diagonal and full GaussianMixtures (10 starts) fitted to the standardised
    true parameters of the training rows: the class-defining ones, then with the nuisances."""
    import pandas as pd
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    truth = pd.read_parquet(truth_path).set_index("id_str")
    truth[["snr", "flux_e"]] = np.log(truth[["snr", "flux_e"]])
    scores = {}
    for name, columns in (("class_parameters", CLASS_PARAMETERS),
                          ("with_nuisances", CLASS_PARAMETERS + NUISANCE_PARAMETERS)):
        for covariance in ("diag", "full"):
            mixture = GaussianMixture(classes, covariance_type=covariance, n_init=10, random_state=seed)
            fitted = make_pipeline(StandardScaler(), mixture).fit(truth.loc[train_ids, list(columns)].to_numpy(float))
            clusters = fitted.predict(truth.loc[test_ids, list(columns)].to_numpy(float))
            scores[f"{name}_{covariance}"] = round(label_scores(test_labels, clusters)["nmi"], 4)
    return scores


def ceiling(name: str, seed: int, epochs: int, overrides: dict, truth: bool = False) -> dict:
    data = dataset(name)
    config = methods.run_config(data, "vade-conv", seed, datasets.FULL).with_overrides(overrides)
    pixels = datasets.prepared_pixels(data, config, datasets.FULL)
    cache = Cache(pixels.cache)
    labels = torch.tensor(cache.split("train")[data.label_column].to_numpy())
    probabilities = fit_predict(as_tensor(pixels.train), labels, as_tensor(pixels.test), data.classes, epochs, seed)
    predicted = probabilities.argmax(1)
    record = {"dataset": name, "seed": seed, "epochs": epochs, "overrides": overrides,
              "scores": {key: round(value, 4) for key, value in label_scores(pixels.test_labels, predicted).items()}}
    if name == "gz1":
        record["gz1"] = gz1_ceiling(data, pixels.test_labels, probabilities)
    if name == "simulated":
        from astrovader.analysis.truth import attribute_scores

        test_ids = cache.split("test")["id_str"].to_numpy()
        record["truth"] = attribute_scores(predicted, test_ids, data.catalogue.parent / "truth.parquet")
        if truth:
            train_ids = cache.split("train")["id_str"].to_numpy()
            record["truth_mixture_nmi"] = truth_mixtures(data.catalogue.parent / "truth.parquet", train_ids, test_ids,
                                                         pixels.test_labels, data.classes, seed)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="pixel settings, e.g. data.scaling=asinh")
    parser.add_argument("--truth", action="store_true", help="simulated: also GaussianMixtures on the true parameters")
    arguments = parser.parse_args(argv)
    overrides = parse_overrides(arguments.set)
    record = ceiling(arguments.dataset, arguments.seed, arguments.epochs, overrides, arguments.truth)
    suffix = "".join(f"-{key.split('.')[-1]}={value}" for key, value in overrides.items())
    write_result(f"probes/ceiling-{arguments.dataset}-seed{arguments.seed}{suffix}", record, echo=False)
    print(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
