"""Clustering quality against known classes, over seeds, on held-out images: astrovader's VaDE
with the conv and the MLP backbone, its two-stage baseline (the same autoencoder, then a
GaussianMixture), k-means on PCA of the pixels, and ClustPy's VaDE (benchmarks.clustpy_runner).

Every method sees the same prepared pixels (`astrovader prepare` with the method's data
settings), fits on the same training rows and is scored with `label_scores` on the same
held-out rows, with K = the number of classes. Our models train through `train_run` (the path
`astrovader train` takes) with a callback that scores the held-out set after every epoch, so the
time to reach the final accuracy is measured, not guessed.

Each (dataset, method, seed) run writes results/clustering/<dataset>-<method>-seed<N>.json and
is reused by a later invocation with the same settings (a killed full run resumes);
`summary_table` turns the records of one budget into results/clustering.md (quick runs: all
under results/quick/).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Callback

from astrovader.analysis.metrics import hungarian_accuracy, label_scores
from astrovader.atomic import read_json, write_with
from astrovader.config import Config, DataConfig
from astrovader.data.cache import Cache, prepare, split_sizes
from astrovader.data.catalogue import idx_catalogue, read_catalogue
from astrovader.data.idx import find_idx_pair, read_idx
from astrovader.data.loader import read_rows, to_float
from astrovader.errors import InputError
from astrovader.estimator import AstroVaDEr
from astrovader.model.inference import model_outputs
from astrovader.train.run import train_run
from benchmarks import clustpy_runner
from benchmarks.common import QUICK as QUICK_FOLDER, RESULTS, machine_description, write_result

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "configs"
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
OURS = ("vade-conv", "vade-mlp", "two-stage", "two-stage-mlp")
PIXEL_BASELINES = ("kmeans-pca", "pca-gmm", "pca-gmm-full")
METHODS = (*OURS, *PIXEL_BASELINES, *clustpy_runner.METHODS)
CLOSE_TO_FINAL = 0.01  # "reached the final accuracy": within 1 point of it
PCA_COMPONENTS = {"kmeans-pca": 50, "pca-gmm": 20, "pca-gmm-full": 20}
PUBLISHED = {"mnist": "VaDE (Jiang et al. 2017) published 94.46 % accuracy on MNIST, from one run."}


@dataclass(frozen=True)
class Budget:
    """How much of each data set and schedule the runs use."""

    name: str
    rows: int | None  # catalogue rows (training rows where a separate test file exists); None: all
    test_rows: int | None
    simulated: int  # stamps in the simulated data set
    schedule: dict = field(default_factory=dict)  # train.* overrides for our methods
    clustpy_default_epochs: tuple[int, int] = clustpy_runner.DEFAULT_EPOCHS
    folder: str = ""  # under results/: records and table of this budget, apart from the others'


FULL = Budget("full", None, None, 6000)
# Minutes on a busy 2-core machine: a check that everything runs, and per-image timings from
# which the full run's duration is estimated; its scores mean nothing.
QUICK = Budget(
    "quick", 500, 300, 500,
    {"train.alpha_epochs": 2, "train.anneal_epochs": 1, "train.static_epochs": 0, "train.periods": 1},
    (10, 15), folder=QUICK_FOLDER,
)


@dataclass(frozen=True)
class Dataset:
    """Labelled images: a training catalogue and a test catalogue, or one catalogue whose
    prepared cache holds the test split; the conv and MLP configs of our methods."""

    name: str
    catalogue: Path
    label_column: str
    config: Config
    test_catalogue: Path | None = None
    mlp_config: Config | None = None
    full_rows: int | None = None  # catalogue rows of the full run, when this one is smaller
    classes: int = 0  # these three are filled in by `counted`
    rows: int = 0
    test_rows: int = 0

    def method_config(self, method: str) -> Config:
        """The config a method runs with (the MLP one gives the pixel-based methods their data)."""
        if method == "vade-conv":
            return self.config
        if method == "two-stage":
            return self.config.with_overrides({"train.method": "two_stage"})
        mlp = self.mlp_config or self.config.with_overrides({"model.backbone": "mlp"})
        return mlp.with_overrides({"train.method": "two_stage"}) if method == "two-stage-mlp" else mlp

    def prepare_settings(self, config: Config, budget: Budget, part: str) -> DataConfig:
        """Data settings of the cache of `part` ("train" or "test"), with the budget's subset."""
        total, wanted = (self.test_rows, budget.test_rows) if part == "test" else (self.rows, budget.rows)
        settings = {"where": evenly_spread(wanted, total)}
        if self.test_catalogue is not None and part == "train":
            # The test file is held out already: train on 95 %, validate on 5 %, waste nothing.
            settings |= {"train_fraction": 0.95, "validation_fraction": 0.05, "split_round_to": 1}
        return config.data.model_copy(update=settings)


@dataclass
class Pixels:
    """Prepared uint8 pixels (N, C, H, W) for one data setting: the training cache (its train and
    validation splits are what our models train on), the training rows and the test rows."""

    cache: Path
    train: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    full_train_rows: int  # training rows of the whole data set, for the full-run estimate
    rejected: int  # inputs `prepare` could not use (listed in the caches' rejects.csv)


# -- data sets -------------------------------------------------------------------------------

def idx_dataset(name: str, folder: Path) -> Dataset:
    """Fashion-MNIST or MNIST IDX files: train on the train file, score on the t10k file."""
    out = RESULTS / "clustering" / "data" / f"{name}-{fingerprint(str(Path(folder).resolve()))}"
    catalogues = {split: idx_split_catalogue(folder, split, out) for split in ("train", "test")}
    return Dataset(
        name, catalogues["train"], "label", Config.from_yaml(CONFIGS / "fashion-mnist-conv.yaml"),
        test_catalogue=catalogues["test"], mlp_config=Config.from_yaml(CONFIGS / "fashion-mnist-mlp.yaml"),
    )


def idx_split_catalogue(folder: Path, split: str, out: Path) -> Path:
    """A catalogue CSV (id_str, file_loc = file#index, label) of one IDX split, written once."""
    path = out / f"{split}.csv"
    if path.exists():
        return path
    pair = find_idx_pair(Path(folder), split)
    if pair is None or pair[1] is None:
        raise InputError(f"{folder}: no {split} images and labels IDX files")
    table = idx_catalogue(pair[0])
    table["label"] = read_idx(pair[1]).astype(np.int64)
    return write_with(path, lambda temporary: table.to_csv(temporary, index=False))


def simulated_dataset(budget: Budget, workers: int = 2) -> Dataset:
    """GalSim galaxies with known classes (morphology x companion), simulated once per size."""
    from astrovader.data.sources.simulate import simulate  # GalSim: a slow import, needed only here

    config = Config.from_yaml(CONFIGS / "galaxies-conv.yaml")
    size = round(config.data.image_size / config.data.crop_fraction)  # as `astrovader train` simulates
    folder = RESULTS / "clustering" / "data" / f"simulated-{budget.simulated}-{size}px"
    if not (folder / "catalog.csv").exists():
        simulate(budget.simulated, size, folder, seed=0, workers=workers)
    return Dataset("simulated", folder / "catalog.csv", "label", config, full_rows=FULL.simulated)


def catalogue_dataset(name: str, catalogue: Path, label_column: str, config_path: Path | None = None) -> Dataset:
    """Any labelled catalogue (GZ1: gz1_class); the cache's test split is held out."""
    config = Config.from_yaml(config_path or CONFIGS / "galaxies-conv.yaml")
    return Dataset(name, Path(catalogue), label_column, config)


def evenly_spread(wanted: int | None, total: int) -> str | None:
    """A `data.where` selecting `wanted` of `total` catalogue rows spread evenly over it (a
    catalogue sorted by class still gives every class), or None for all of them."""
    if wanted is None or wanted >= total:
        return None
    step = total // wanted
    return f"index % {step} == 0 and index < {step * wanted}"


def counted(dataset: Dataset) -> Dataset:
    """The data set with its class count (K of every method) and its row counts, checking that
    every row is labelled."""
    labels = class_labels(dataset.catalogue, dataset.label_column)
    test_rows = len(read_catalogue(dataset.test_catalogue)) if dataset.test_catalogue else 0
    return replace(dataset, classes=int(labels.nunique()), rows=len(labels), test_rows=test_rows)


def class_labels(catalogue: Path, column: str):
    table = read_catalogue(catalogue)
    if column not in table.columns:
        raise InputError(f"{catalogue}: no label column {column!r} (columns: {', '.join(map(str, table.columns[:12]))})")
    labels = table[column]
    if labels.isna().any():
        raise InputError(f"{catalogue}: label column {column!r} is empty in {int(labels.isna().sum())} row(s)")
    return labels


def prepared_pixels(dataset: Dataset, config: Config, budget: Budget) -> Pixels:
    """Prepare (or reuse) the caches of `dataset` with `config`'s data settings."""
    train_settings = dataset.prepare_settings(config, budget, "train")
    train_cache = Cache(prepared_cache(dataset, dataset.catalogue, train_settings, "train"))
    if dataset.test_catalogue is None:
        test_cache, test_rows = train_cache, train_cache.split("test")
    else:
        test_settings = dataset.prepare_settings(config, budget, "test")
        test_cache = Cache(prepared_cache(dataset, dataset.test_catalogue, test_settings, "test"))
        test_rows = test_cache.index
    if dataset.label_column not in test_rows.columns:
        raise InputError(f"{dataset.catalogue}: no label column {dataset.label_column!r}")
    if test_rows.empty:
        raise InputError(f"{dataset.name}: no held-out test rows; use more images")
    train_rows = train_cache.split("train")["row"].to_numpy()
    return Pixels(
        train_cache.folder, read_rows(train_cache.images, train_rows),
        read_rows(test_cache.images, test_rows["row"].to_numpy()), test_rows[dataset.label_column].to_numpy(),
        split_sizes(dataset.full_rows or dataset.rows, train_settings.model_copy(update={"where": None}))[0],
        sum(len(cache.rejects) for cache in {train_cache.folder: train_cache, test_cache.folder: test_cache}.values()),
    )


def prepared_cache(dataset: Dataset, catalogue: Path, settings: DataConfig, part: str) -> Path:
    """benchmarks/results/clustering/data/<dataset>/<part>-<digest of the settings>, prepared once."""
    digest = fingerprint({"catalogue": str(catalogue), "data": settings.model_dump(mode="json")})
    folder = RESULTS / "clustering" / "data" / dataset.name / f"{part}-{digest}"
    summary = prepare(catalogue, folder, settings)
    if summary.accepted == 0:
        raise InputError(f"{catalogue}: none of its {summary.inputs} selected inputs could be read "
                         f"(reasons: {folder / 'rejects.csv'})")
    return folder


# -- one run -----------------------------------------------------------------------------------

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


def run_pixel_baseline(method: str, pixels: Pixels, classes: int, seed: int) -> dict:
    """A one-second baseline on the pixels: the first PCA_COMPONENTS principal components, then
    k-means (`kmeans-pca`) or a diagonal / full-covariance GaussianMixture (`pca-gmm`,
    `pca-gmm-full`), each the best of 10 starts."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import make_pipeline

    train, test = flat(pixels.train), flat(pixels.test)
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
    return {"clusters": pipeline.predict(test), "train_seconds": seconds, "curve": [], "epochs": 1}


def flat(pixels: np.ndarray) -> np.ndarray:
    return to_float(pixels).flatten(1).numpy()


def run_record(dataset: Dataset, method: str, seed: int, budget: Budget, pixels: Pixels) -> dict:
    """Train and score one (dataset, method, seed); the JSON-able record."""
    config = run_config(dataset, method, seed, budget)
    started = time.perf_counter()
    if method in OURS:
        result = run_ours(config, pixels)
    elif method in PIXEL_BASELINES:
        result = run_pixel_baseline(method, pixels, dataset.classes, seed)
    else:
        result = clustpy_runner.cluster(
            flat(pixels.train), flat(pixels.test), dataset.classes, seed,
            clustpy_runner.epochs(method, config, budget.clustpy_default_epochs),
        )
    scores = label_scores(pixels.test_labels, result["clusters"])
    train_images, epochs = len(pixels.train), result["epochs"]
    full_epochs = full_epoch_count(dataset, method, seed)
    return {
        "dataset": dataset.name, "method": method, "seed": seed, "budget": budget.name,
        "classes": dataset.classes, "train_images": train_images, "test_images": len(pixels.test),
        "largest_class_share": round(largest_class_share(pixels.test_labels), 4),
        "rejected_inputs": pixels.rejected,
        "image_size": config.data.image_size, "epochs": epochs,
        "scores": {name: round(value, 4) for name, value in scores.items()},
        "train_seconds": round(result["train_seconds"], 3),
        "time_to_final": time_to_final(result["curve"], scores["accuracy"], result["train_seconds"]),
        "curve": result["curve"], "epoch_seconds": result.get("epoch_seconds", []),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "work": train_images * epochs, "full_work": pixels.full_train_rows * full_epochs,
        "details": result.get("details", {}), "config": config.to_dict(),
    }


def largest_class_share(labels: np.ndarray) -> float:
    """The accuracy of one cluster for everything: what accuracy means on unbalanced classes."""
    return float(np.unique(labels, return_counts=True)[1].max() / len(labels))


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


def fingerprint(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- all runs ----------------------------------------------------------------------------------

def record_name(dataset: str, method: str, seed: int, budget: Budget) -> str:
    """results/[budget folder/]clustering/<dataset>-<method>-seed<N>: a quick run never
    overwrites a full run's record."""
    return str(Path(budget.folder) / "clustering" / f"{dataset}-{method}-seed{seed}")


def run_all(datasets: list[Dataset], methods: list[str], seeds: list[int], budget: Budget,
            echo: Callable[[str], None] = print) -> tuple[list[dict], list[str]]:
    """Every (dataset, method, seed), reusing records made with the same settings; returns the
    records and one line per failed run (the others go on)."""
    records, failures = [], []
    prepared: dict[str, Pixels] = {}  # by data settings: methods that share them share the pixels
    for dataset in datasets:
        for method in methods:
            config = dataset.method_config(method)
            data_key = fingerprint([dataset.name, str(dataset.catalogue), *(
                dataset.prepare_settings(config, budget, part).model_dump(mode="json") for part in ("train", "test"))])
            for seed in seeds:
                identity = {"run": [dataset.name, method, seed], "budget": budget.name,
                            "config": run_config(dataset, method, seed, budget).to_dict(),
                            "catalogue": str(dataset.catalogue), "data": data_key}
                name = record_name(dataset.name, method, seed, budget)
                path = RESULTS / f"{name}.json"
                if path.exists() and read_json(path).get("fingerprint") == fingerprint(identity):
                    records.append(read_json(path))
                    echo(f"{dataset.name} {method} seed {seed}: reused {path.name}")
                    continue
                try:
                    if data_key not in prepared:
                        prepared[data_key] = prepared_pixels(dataset, config, budget)
                    record = run_record(dataset, method, seed, budget, prepared[data_key])
                except Exception as error:  # noqa: BLE001 - an unattended run goes on; failures are listed
                    message = " ".join(str(error).split())[:300]  # one line in the table
                    failures.append(f"{dataset.name} {method} seed {seed}: {error.__class__.__name__}: {message}")
                    echo(f"FAILED {failures[-1]}")
                    continue
                record["fingerprint"] = fingerprint(identity)
                write_result(name, record, echo=False)
                records.append(record)
                echo(describe(record))
    return records, failures


def describe(record: dict) -> str:
    scores, reached = record["scores"], record["time_to_final"]
    return (f"{record['dataset']} {record['method']} seed {record['seed']}: accuracy {scores['accuracy']:.1%}, "
            f"NMI {scores['nmi']:.3f}, ARI {scores['ari']:.3f}; trained in {record['train_seconds']:.1f} s, "
            f"final accuracy reached after {reached['seconds']:.1f} s")


def budget_records(budget: Budget) -> list[dict]:
    """Every record of this budget in its results/[folder/]clustering (earlier invocations' too)."""
    records = [read_json(path) for path in sorted((RESULTS / budget.folder / "clustering").glob("*.json"))]
    return [record for record in records if record.get("budget") == budget.name]


# -- the table ---------------------------------------------------------------------------------

def summary_table(records: list[dict], budget: Budget, failures: list[str] = ()) -> str:
    """Markdown: per dataset x method, the median and [min-max] over seeds."""
    lines = [
        f"# Clustering benchmark ({budget.name})", "",
        "Held-out scores with K = the number of classes; median [min, max] over seeds. Accuracy uses the "
        "best one-to-one matching of clusters to classes (Hungarian). \"Final accuracy reached\": training "
        f"seconds until the held-out accuracy first came within {CLOSE_TO_FINAL:.0%} of its final value "
        "(scored after every epoch; methods without epochs: their whole training time).", "",
    ]
    if budget.name == "quick":
        lines += ["Quick mode: small subsets and a few epochs, to check that everything runs; the scores "
                  "mean nothing.", ""]
    by_dataset: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        by_dataset.setdefault(record["dataset"], {}).setdefault(record["method"], []).append(record)
    for dataset, methods in by_dataset.items():
        first = next(iter(methods.values()))[0]
        lines += [f"## {dataset}", "", f"{first['train_images']} training / {first['test_images']} test images "
                  f"({first.get('rejected_inputs', '?')} inputs rejected by prepare), K = {first['classes']}. "
                  f"{largest_class_sentence(first)}{PUBLISHED.get(dataset, '')}".rstrip(), "",
                  "| Method | Seeds | Pixels | Epochs | Accuracy % | NMI | ARI | Train s | Final accuracy reached, s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for method in sorted(methods, key=METHODS.index):
            runs = sorted(methods[method], key=lambda run: run["seed"])
            lines.append("| " + " | ".join([
                method, ", ".join(str(run["seed"]) for run in runs), f"{runs[0]['image_size']} px",
                str(runs[0]["epochs"]),
                spread([run["scores"]["accuracy"] * 100 for run in runs], "{:.1f}"),
                spread([run["scores"]["nmi"] for run in runs], "{:.3f}"),
                spread([run["scores"]["ari"] for run in runs], "{:.3f}"),
                spread([run["train_seconds"] for run in runs], "{:.0f}"),
                spread([run["time_to_final"]["seconds"] for run in runs], "{:.0f}"),
            ]) + " |")
        lines.append("")
    if failures:
        lines += ["## Failed runs", "", *[f"- {failure}" for failure in failures], ""]
    lines += machines_section(records)
    if budget.name == "quick" and records:
        lines += [full_run_estimate(records), ""]
    return "\n".join(lines)


def largest_class_sentence(record: dict) -> str:
    share = record.get("largest_class_share")  # absent from records made before it was kept
    if share is None:
        return ""
    return f"The largest class holds {share:.1%} of the test images: one cluster for everything scores that accuracy. "


def machines_section(records: list[dict]) -> list[str]:
    """Which machines made the records (a table built over several sittings may mix them, and
    then its times do not compare), with how many runs each."""
    counts = Counter(machine_description(record.get("machine", {})) for record in records)
    if not counts:
        return []
    lines = ["## Machines", ""] + [f"- {description}: {count} run(s)" for description, count in counts.items()]
    if len(counts) > 1:
        lines.append("- Several machines: compare the times of rows measured on the same machine only.")
    return [*lines, ""]


def spread(values: list[float], style: str) -> str:
    median = style.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} [{style.format(min(values))}, {style.format(max(values))}]"


def full_run_seconds(record: dict) -> float:
    """A run's duration at full size: its fixed costs (start-up, scoring, prediction) as
    measured, plus its training at the measured seconds per image x epoch (the median of the
    epochs after the first, which warms up; the whole training time without epoch timings)
    times the full run's images x epochs."""
    epochs = record.get("epoch_seconds") or []
    if len(epochs) >= 2:
        scaled, per_work = sum(epochs), statistics.median(epochs[1:]) / record["train_images"]
    else:
        scaled, per_work = record["train_seconds"], record["train_seconds"] / max(record["work"], 1)
    return record["wall_seconds"] - scaled + per_work * record["full_work"]


def full_run_estimate(records: list[dict]) -> str:
    hours = sum(map(full_run_seconds, records)) / 3600
    return (f"Estimated full clustering run for the same data sets, methods and seeds, at the speed measured "
            f"here: {hours:.1f} h (`full_run_seconds`: each run's training scaled to the full run's images x "
            f"epochs; data preparation and simulation not included).")
