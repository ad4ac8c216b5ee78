"""The methods compared: ours (VaDE with the conv or MLP backbone, the two-stage baselines) trained
through `train_run` and scored on the held-out rows every epoch, and the pixel baselines."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from astrovader.analysis.metrics import hungarian_accuracy
from astrovader.config import Config, ModelConfig
from astrovader.data.loader import to_float
from astrovader.estimator import AstroVaDEr
from astrovader.model.inference import model_outputs
from astrovader.model.losses import aperture_pixel_weights
from astrovader.train.run import train_run
from benchmarks import clustpy_runner
from benchmarks.clustering.datasets import FULL, Budget, Dataset, Pixels

OURS = ("vade-conv", "vade-mlp", "two-stage", "two-stage-mlp")
PIXEL_BASELINES = ("kmeans-pca", "pca-gmm", "pca-gmm-full", "pca-gmm-aperture")
METHODS = (*OURS, *PIXEL_BASELINES, *clustpy_runner.METHODS)
CLOSE_TO_FINAL = 0.01  # "reached the final accuracy": within 1 point of it
PCA_COMPONENTS = {"kmeans-pca": 50, "pca-gmm": 20, "pca-gmm-full": 20, "pca-gmm-aperture": 20}


class HeldOutAccuracy(Callback):
    """After every epoch that has a fitted prior (and once more at the end for the two-stage
    baseline, whose mixture is fitted then): the held-out accuracy and the training seconds so
    far, with the time spent scoring left out; and every epoch's duration."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray):
        self.images, self.labels = to_float(pixels), labels
        self.started, self.scoring_seconds = time.perf_counter(), 0.0
        self.curve: list[dict] = []
        self.epoch_ends: list[float] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.epoch_ends.append(time.perf_counter() - self.started - self.scoring_seconds)
        self.score(trainer.current_epoch, module)

    def epoch_seconds(self) -> list[float]:
        return np.diff([0.0, *self.epoch_ends]).round(3).tolist()

    def on_train_end(self, trainer, module) -> None:
        if not self.curve or self.curve[-1]["epoch"] != trainer.current_epoch - 1:
            self.score(trainer.current_epoch - 1, module)

    def score(self, epoch: int, module) -> None:
        if not module.model.prior.initialised:
            return
        started = time.perf_counter()
        clusters = model_outputs(module.model, self.images, reconstruct=False)["gamma"].argmax(axis=1)
        self.curve.append({
            "epoch": epoch, "seconds": round(started - self.started - self.scoring_seconds, 3),
            "accuracy": round(hungarian_accuracy(self.labels, clusters), 4),
        })
        self.scoring_seconds += time.perf_counter() - started


def time_to_final(curve: list[dict], final: float, total_seconds: float) -> dict:
    """The first (epoch, seconds) within CLOSE_TO_FINAL of the final accuracy; without a
    curve (methods that only have an end result), the whole training time."""
    for point in curve:
        if point["accuracy"] >= final - CLOSE_TO_FINAL:
            return {"epoch": point["epoch"], "seconds": point["seconds"]}
    return {"epoch": None, "seconds": round(total_seconds, 3)}


def run_ours(config: Config, pixels: Pixels) -> dict:
    with tempfile.TemporaryDirectory(prefix="astrovader-benchmark-") as folder:
        accuracy = HeldOutAccuracy(pixels.test, pixels.test_labels)
        train_run(Path(folder) / "run", config, pixels.cache, progress=False, callbacks=[accuracy])
        seconds = time.perf_counter() - accuracy.started - accuracy.scoring_seconds
        clusters = AstroVaDEr.load(Path(folder) / "run").predict(pixels.test)
    return {"clusters": clusters, "train_seconds": seconds, "curve": accuracy.curve,
            "epochs": config.train.total_epochs, "epoch_seconds": accuracy.epoch_seconds()}


def run_pixel_baseline(method: str, pixels: Pixels, classes: int, seed: int, aperture: float | None = None) -> dict:
    """A one-second baseline on the pixels: the first PCA_COMPONENTS principal components, then
    k-means (`kmeans-pca`) or a diagonal / full-covariance GaussianMixture (`pca-gmm`,
    `pca-gmm-full`), each the best of 10 starts. `pca-gmm-aperture` weights the pixels first by
    the square root of the model's aperture (`aperture`, None: the default's), so that its
    distances weigh each pixel as the VaDE's reconstruction term does. Also the principal
    components of the training and test pixels (`embedded`), the features the clusters were
    found in."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import make_pipeline

    train, test = flat(pixels.train), flat(pixels.test)
    if method == "pca-gmm-aperture":
        weights = aperture_pixel_weights(pixels.train.shape[1:], aperture or ModelConfig().aperture, torch.device("cpu"))
        train, test = (values * weights.numpy() for values in (train, test))
    components = min(PCA_COMPONENTS[method], train.shape[0], train.shape[1])
    if method == "kmeans-pca":
        clusterer = KMeans(classes, n_init=10, random_state=seed)
    else:
        covariance = "full" if method == "pca-gmm-full" else "diag"
        clusterer = GaussianMixture(classes, covariance_type=covariance, n_init=10, random_state=seed)
    pipeline = make_pipeline(PCA(components, random_state=seed), clusterer)
    started = time.perf_counter()
    pipeline.fit(train)
    seconds = time.perf_counter() - started
    projection = pipeline[0]
    return {"clusters": pipeline.predict(test), "train_seconds": seconds, "curve": [], "epochs": 1,
            "embedded": [projection.transform(train), projection.transform(test)]}


def flat(pixels: np.ndarray) -> np.ndarray:
    return to_float(pixels).flatten(1).numpy()


def run_clustpy(method: str, config: Config, pixels: Pixels, classes: int, seed: int, budget: Budget) -> dict:
    """ClustPy's VaDE on the flattened prepared pixels, with its default or our matched epochs."""
    return clustpy_runner.cluster(flat(pixels.train), flat(pixels.test), classes, seed,
                                  clustpy_runner.epochs(method, config, budget.clustpy_default_epochs))


def run_config(dataset: Dataset, method: str, seed: int, budget: Budget) -> Config:
    overrides = {"model.n_components": dataset.classes, "train.seed": seed}
    return dataset.method_config(method).with_overrides({**overrides, **budget.schedule})


def full_epoch_count(dataset: Dataset, method: str, seed: int) -> int:
    if method in PIXEL_BASELINES:
        return 1
    full = run_config(dataset, method, seed, FULL)
    if method in OURS:
        return full.train.total_epochs
    return sum(clustpy_runner.epochs(method, full, FULL.clustpy_default_epochs).values())
