"""A training run's folder, and the one place that knows what it holds:

    config.yaml              the full configuration
    run.json                 data source (with the link to its prepared cache), precision, status
    metrics.csv              one row per epoch (train.callbacks.EpochMetrics)
    checkpoints/last.ckpt    Lightning checkpoint, safetensors format (after every epoch)
    model.safetensors        the final model weights (model.io)
    model.json               config, preprocessing, class names, parameter counts (model.io)
    cache/                   the prepared data, when the data given was not already a cache
    simulated/               the simulated galaxies, when training was given no data

`RunFolder` names these files and reads them; `Run` is a trained run opened for analysis (its
model loaded), with the prepared cache it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astrovader.atomic import read_json, write_json_atomic
from astrovader.config import Config
from astrovader.data.cache import Cache
from astrovader.errors import InputError
from astrovader.model.io import METADATA, WEIGHTS, load_model
from astrovader.model.vade import VaDE


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.info_file = self.path / "run.json"
        self.metrics_file = self.path / "metrics.csv"
        self.last_checkpoint = self.path / "checkpoints" / "last.ckpt"
        self.weights = self.path / WEIGHTS
        self.metadata_file = self.path / METADATA
        self.cache_folder = self.path / "cache"  # the prepared data, when training was not given a cache
        self.simulated_folder = self.path / "simulated"  # the simulated galaxies, when it was given no data

    def has_model(self) -> bool:
        return self.metadata_file.exists()

    def read_config(self) -> Config:
        return Config.from_yaml(self.config_file)

    def write_config(self, config: Config) -> None:
        config.to_yaml(self.config_file)

    def read_info(self) -> dict[str, Any]:
        """run.json ({} when absent)."""
        return read_json(self.info_file) if self.info_file.exists() else {}

    def write_info(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.info_file, info)

    def recorded_cache(self) -> Path | None:
        """The prepared cache the run was trained on, as run.json records it (None if none)."""
        return cache_link(self.read_info())

    def open(self) -> Run:
        """The trained run, its model loaded (`model.io.load_model`)."""
        model, metadata = load_model(self.path)
        return Run(self.path, model, metadata, self.read_info())


def cache_link(info: dict[str, Any]) -> Path | None:
    """The prepared cache recorded in a run.json's contents (None if none)."""
    recorded = info.get("data", {}).get("cache")
    return None if recorded is None else Path(recorded)


@dataclass
class Run:
    folder: Path
    model: VaDE
    metadata: dict[str, Any]
    info: dict[str, Any]  # run.json (empty when absent)

    @property
    def config(self):
        return self.model.config

    def cache(self, data: str | Path | None = None) -> Cache | None:
        """The cache `data`, else the one the run was trained on (None if there is none)."""
        if data is None:
            recorded = cache_link(self.info)
            if recorded is None or not Cache.is_cache(recorded):
                return None
            data = recorded
        elif not Cache.is_cache(data):
            raise InputError(f"{data}: not a prepared cache (no cache.json); run `astrovader prepare` first")
        cache = Cache(data)
        cache.check_matches(self.config.data)
        return cache

