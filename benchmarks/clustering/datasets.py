"""The labelled data sets of the benchmark (Fashion-MNIST, MNIST, simulated galaxies, GZ1, any
labelled catalogue), the budgets that cap them, and their prepared pixels."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from astrovader.atomic import write_with
from astrovader.config import Config, DataConfig
from astrovader.data.cache import Cache, prepare, split_sizes
from astrovader.data.catalogue import idx_catalogue, read_catalogue
from astrovader.data.idx import find_idx_pair, read_idx
from astrovader.data.loader import read_rows
from astrovader.errors import InputError
from benchmarks import clustpy_runner
from benchmarks.common import QUICK as QUICK_FOLDER, RESULTS


REPOSITORY = Path(__file__).resolve().parents[2]
CONFIGS = REPOSITORY / "configs"
SHARED_DATA = REPOSITORY.parent / "shared" / "data"


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


def fingerprint(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
