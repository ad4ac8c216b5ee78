"""One training run of the clustering benchmark with config overrides, watched epoch by epoch:
the small measurements that find causes before the full 3-seed tables.

    python -m benchmarks.probe DATASET [--method vade-conv] [--seed 0] [--set KEY=VALUE ...]
        [--name NAME] [--keep RUN_FOLDER]

DATASET is simulated, gz1 or fashion-mnist (the benchmark's pixels, rows and splits); METHOD
one of ours (vade-conv, vade-mlp, two-stage, two-stage-mlp), a pixel baseline (pca-gmm,
pca-gmm-full, pca-gmm-aperture: pixels weighted by the model's aperture, kmeans-pca: seconds,
which pixels carry the classes) or ClustPy's VaDE
(clustpy-vade-default, clustpy-vade-matched: on the same prepared pixels); --set overrides any config
field (data.* settings prepare their own cache first; model.n_components is the number of
clusters of every method, the data set's classes unless set). Prints one JSON line per epoch: the held-out
NMI of the model's own components (once the prior exists) and, every 5 epochs, that of a
full-covariance GaussianMixture refitted to mu_z of the training rows. The final record adds
accuracy, NMI and ARI of the model and of the refits (diagonal, full), and, on the simulated
galaxies, the NMI of the components against each truth attribute and the held-out R^2 of a
linear read-out of each attribute from the features (analysis.truth); for our models, how many
of the test images' secondary sources (companions, neighbours, stars) their reconstructions
keep (analysis.sources). Records go
to results/probes/<NAME>.json; benchmarks/README.md lists the probes run so far.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml
from lightning.pytorch.callbacks import Callback

from astrovader.analysis.metrics import label_scores
from astrovader.analysis.sources import recovery_summary, source_recovery
from astrovader.data.cache import Cache
from astrovader.estimator import AstroVaDEr
from astrovader.model.inference import decode, model_outputs
from astrovader.train.gmm import fit_gmm
from astrovader.train.run import train_run
from benchmarks import clustpy_runner
from benchmarks.clustering import datasets, methods, records
from benchmarks.common import write_result

REFIT_EVERY = 5
REFIT_ROWS = 3000  # training rows of the per-epoch refit (all of them for the final one)
DATASETS = ("simulated", "gz1", "fashion-mnist")


def dataset(name: str) -> datasets.Dataset:
    if name == "simulated":
        found = datasets.simulated_dataset(datasets.FULL)
    elif name == "gz1":
        found = datasets.catalogue_dataset("gz1", datasets.SHARED_DATA / "gz1-sdss" / "catalog.csv", "gz1_class")
    else:
        found = datasets.idx_dataset("fashion-mnist", datasets.SHARED_DATA / "fashion-mnist")
    return datasets.counted(found)


def refit(mu_train: np.ndarray, mu_test: np.ndarray, classes: int, covariance: str, seed: int) -> np.ndarray:
    """Components of a GaussianMixture fitted to training mu_z (as ClustPy's VaDE predicts)."""
    return fit_gmm(mu_train, classes, seed, covariance, restarts=3).predict(np.asarray(mu_test, dtype=np.float64))


class Watch(Callback):
    """After every epoch: held-out NMI of the model's components; every REFIT_EVERY epochs
    and at the end of the pretraining, that of a refitted full GMM. Its time is left out."""

    def __init__(self, pixels: datasets.Pixels, classes: int, seed: int, pretraining: int):
        self.pixels, self.classes, self.seed, self.pretraining = pixels, classes, seed, pretraining
        self.started, self.left_out = time.perf_counter(), 0.0
        self.curve: list[dict] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        started = time.perf_counter()
        epoch = trainer.current_epoch
        outputs = model_outputs(module.model, self.pixels.test, reconstruct=False)
        row = {"epoch": epoch, "seconds": round(started - self.started - self.left_out, 1)}
        if module.model.prior.initialised:
            row["nmi"] = round(label_scores(self.pixels.test_labels, outputs["gamma"].argmax(1))["nmi"], 4)
        if epoch == self.pretraining - 1 or epoch % REFIT_EVERY == REFIT_EVERY - 1:
            train = model_outputs(module.model, self.pixels.train[:REFIT_ROWS], reconstruct=False)["mu"]
            clusters = refit(train, outputs["mu"], self.classes, "full", self.seed)
            row["refit_full_nmi"] = round(label_scores(self.pixels.test_labels, clusters)["nmi"], 4)
        self.curve.append(row)
        print(row, flush=True)
        self.left_out += time.perf_counter() - started


def probe(name: str, method: str, seed: int, overrides: dict, keep: Path | None = None) -> dict:
    data = dataset(name)
    config = methods.run_config(data, method, seed, datasets.FULL).with_overrides(overrides)
    pixels = datasets.prepared_pixels(data, config, datasets.FULL)
    if method in methods.PIXEL_BASELINES:
        result = methods.run_pixel_baseline(method, pixels, config.model.n_components, seed, config.model.aperture)
        return scored(data, method, seed, overrides, config, pixels, result["clusters"],
                      {}, result["train_seconds"], [], result["embedded"])
    if method in clustpy_runner.METHODS:
        result = methods.run_clustpy(method, config, pixels, config.model.n_components, seed, datasets.FULL)
        return scored(data, method, seed, overrides, config, pixels, result["clusters"], {}, result["train_seconds"], [], [])
    watch = Watch(pixels, config.model.n_components, seed, config.train.alpha_epochs)
    with tempfile.TemporaryDirectory(prefix="astrovader-probe-") as folder:
        run = keep or Path(folder) / "run"
        train_run(run, config, pixels.cache, progress=False, callbacks=[watch])
        seconds = time.perf_counter() - watch.started - watch.left_out
        model = AstroVaDEr.load(run)
        clusters = model.predict(pixels.test)
        mu_train, mu_test = model.transform(pixels.train), model.transform(pixels.test)
        sources = source_recovery(model.pixels(pixels.test), decode(model.model_, mu_test))  # mu_test decoded, not re-encoded
    refits = {f"refit_{covariance}": refit(mu_train, mu_test, config.model.n_components, covariance, seed)
              for covariance in ("diag", "full")}
    record = scored(data, method, seed, overrides, config, pixels, clusters, refits, seconds, watch.curve,
                    [mu_train, mu_test])
    record["sources"] = {key: round(value, 4) for key, value in recovery_summary(sources, len(pixels.test)).items()}
    return record


def scored(data: datasets.Dataset, method: str, seed: int, overrides: dict, config, pixels: datasets.Pixels,
           clusters: np.ndarray, refits: dict, seconds: float, curve: list, embedded: list) -> dict:
    """The probe's record: scores of the clusters (and of any refits); on the simulated galaxies
    also against each truth attribute, and what the features (mu_z, or the pixels' principal
    components; none for ClustPy's VaDE) tell of each attribute linearly."""
    scores = {"model": label_scores(pixels.test_labels, clusters)}
    scores |= {key: label_scores(pixels.test_labels, value) for key, value in refits.items()}
    record = {
        "dataset": data.name, "method": method, "seed": seed, "overrides": overrides, "train_seconds": round(seconds, 1),
        "scores": {key: {metric: round(value, 4) for metric, value in values.items()} for key, values in scores.items()},
        "curve": curve, "config": config.to_dict(),
    }
    if data.name == "simulated":
        from astrovader.analysis.truth import attribute_scores, linear_information

        cache, truth = Cache(pixels.cache), data.catalogue.parent / "truth.parquet"
        train_ids, test_ids = (cache.split(part)["id_str"].to_numpy() for part in ("train", "test"))
        record["truth"] = attribute_scores(clusters, test_ids, truth)
        if embedded:
            record["linear"] = linear_information(embedded[0], train_ids, embedded[1], test_ids, truth)
    if data.name == "gz1":
        record["gz1"] = records.gz1_capture(data, pixels.test_labels, clusters)
    return record


def parse_overrides(pairs: list[str]) -> dict:
    """--set KEY=VALUE ... as config overrides (values read as YAML: 0.3, full, [1, 2])."""
    overrides = {}
    for pair in pairs:
        key, sign, value = pair.partition("=")
        if not sign:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return overrides


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--method", default="vade-conv", choices=methods.METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. model.covariance=full")
    parser.add_argument("--name", help="record name (default: from the data set, method, seed and overrides)")
    parser.add_argument("--keep", type=Path, help="keep the trained run in this folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse(argv)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    overrides = parse_overrides(arguments.set)
    record = probe(arguments.dataset, arguments.method, arguments.seed, overrides, arguments.keep)
    name = arguments.name or "-".join([arguments.dataset, arguments.method, f"seed{arguments.seed}",
                                       *(f"{key.split('.')[-1]}={value}" for key, value in overrides.items())])
    write_result(f"probes/{name}", record, echo=False)
    print({"final": record["scores"], **{key: record[key] for key in ("truth", "linear", "gz1", "sources") if key in record}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
