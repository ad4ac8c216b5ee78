"""Shared fixtures. Real data lives in ../shared/data beside the project: tests that need it
skip cleanly when it is absent (a user's fresh clone); CI always has it."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

# Two cores: keep torch from oversubscribing when pytest runs beside worker processes.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GZ1 = SHARED_DATA / "gz1-sdss"
FASHION = SHARED_DATA / "fashion-mnist"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (real data lives in ../shared/data)")
    return path


@pytest.fixture(scope="session")
def gz1_dir() -> Path:
    return require(GZ1)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    return require(FASHION)


def blob_images(count: int, size: int = 24, seed: int = 0):
    """Galaxy-like test images with known classes: 0 round, 1 elongated along x, 2 along y
    (Gaussian profiles with noise and a random centre shift), float32 in [0, 1]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2
    images = np.empty((count, size, size), dtype=np.float32)
    for i, label in enumerate(labels):
        sx, sy = np.array({0: (2.5, 2.5), 1: (5.0, 1.5), 2: (1.5, 5.0)}[label]) * rng.uniform(0.8, 1.2)
        dx, dy = rng.normal(0, 1, 2)
        image = rng.uniform(0.5, 1.0) * np.exp(-0.5 * (((x - dx) / sx) ** 2 + ((y - dy) / sy) ** 2))
        images[i] = np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1)
    return images, labels


@pytest.fixture(scope="session")
def blob_catalogue(tmp_path_factory):
    """A catalogue of 600 blob images (.npy files) with a `label` column."""
    import numpy as np
    import pandas as pd

    folder = tmp_path_factory.mktemp("blobs")
    images, labels = blob_images(600)
    (folder / "images").mkdir()
    for i, image in enumerate(images):
        np.save(folder / "images" / f"g{i:04d}.npy", image)
    table = pd.DataFrame({
        "id_str": [f"g{i:04d}" for i in range(len(images))],
        "file_loc": [f"images/g{i:04d}.npy" for i in range(len(images))],
        "label": labels,
        "label_name": np.array(["round", "along_x", "along_y"])[labels],
    })
    table.to_csv(folder / "catalog.csv", index=False)
    return folder / "catalog.csv"


@pytest.fixture(scope="session")
def tiny_config():
    from astrovader.config import Config

    # Blobs fill the stamp: no crop; fixed scaling keeps brightness differences; two of the
    # classes differ only in orientation, so no canonical orientation.
    return Config.from_preset("tiny", data={"crop_fraction": 1.0, "scaling": "fixed", "fixed_max": 1.0, "workers": 1,
                                            "orientation": "none"})


@pytest.fixture(scope="session")
def blob_cache(blob_catalogue, tiny_config, tmp_path_factory):
    from astrovader.data.cache import prepare

    out = tmp_path_factory.mktemp("blob-cache") / "cache"
    prepare(blob_catalogue, out, tiny_config.data)
    return out


@contextmanager
def torch_threads(count: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Tiny models beside other work on two cores: two OpenMP threads spend most of their time
    waiting for each other."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_per_module():
    with torch_threads(1):
        yield


def class_prior_model(cache_folder: Path, config):
    """A tiny model in seconds even on a busy machine: seeded networks, and one prior component
    per blob class (mean and variance of the class's embeddings) instead of training."""
    import numpy as np
    import torch

    from astrovader.data.cache import Cache
    from astrovader.model.inference import model_outputs
    from astrovader.model.vade import VaDE

    torch.manual_seed(0)
    model = VaDE(config).eval()
    cache = Cache(cache_folder)
    embeddings = model_outputs(model, cache.images[cache.index["row"].to_numpy()], reconstruct=False)["mu"]
    classes = [embeddings[cache.index["label"].to_numpy() == label] for label in sorted(cache.index["label"].unique())]
    model.prior.set_from_gmm(np.full(len(classes), 1 / len(classes)), np.stack([c.mean(0) for c in classes]),
                             np.stack([c.var(0) for c in classes]))
    return model
