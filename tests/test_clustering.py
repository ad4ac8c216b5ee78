"""Does it cluster? CI-sized checks with floors that a broken model cannot reach (random
assignments score NMI ~ 0 and accuracy ~ 1/K)."""

import numpy as np

from astrovader.analysis.metrics import label_scores
from astrovader.config import Config
from astrovader.estimator import AstroVaDEr
from astrovader.train.run import train_run


def test_vade_separates_the_blob_shapes(blob_cache, tiny_config, tmp_path):
    """Median over 3 seeds: a model this tiny lands in a poor optimum for some seeds and some
    CPUs' rounding (seen: NMI from 0.02 to 1.0), a broken one in every seed."""
    from astrovader.data.cache import Cache
    from astrovader.data.loader import read_rows

    cache = Cache(blob_cache)
    test = cache.split("test")
    pixels = read_rows(cache.images, test["row"].to_numpy())
    longer = {"train.alpha_epochs": 20, "train.gmm_batches": 24, "train.anneal_epochs": 2, "train.static_epochs": 2}
    nmi, accuracy = [], []
    for seed in range(3):
        run = tmp_path / f"seed{seed}"
        train_run(run, tiny_config.with_overrides({**longer, "train.seed": seed}), blob_cache, progress=False)
        scores = label_scores(test["label"].to_numpy(), AstroVaDEr.load(run).predict(pixels))
        nmi.append(scores["nmi"])
        accuracy.append(scores["accuracy"])
    assert np.median(nmi) > 0.4 and np.median(accuracy) > 0.6, (nmi, accuracy)


def test_fashion_mnist_subset_clusters_well_above_chance(fashion_dir, tmp_path):
    from astrovader.data.idx import load_idx_dataset

    images, _ = load_idx_dataset(fashion_dir, "train")
    test_images, test_labels = load_idx_dataset(fashion_dir, "test")
    config = Config.from_yaml(_config_path("fashion-mnist-mlp.yaml")).with_overrides({
        "model.hidden": (256, 256, 512), "train.batch_size": 128, "train.gmm_batches": 20,
        "train.alpha_epochs": 6, "train.anneal_epochs": 2, "train.static_epochs": 1, "train.periods": 2,
    })
    model = AstroVaDEr(config).fit(images[:3000], out=tmp_path / "run")
    scores = label_scores(test_labels[:2000], model.predict(test_images[:2000]))
    assert scores["nmi"] > 0.35 and scores["accuracy"] > 0.3, scores
    assert len(np.unique(model.predict(test_images[:2000]))) >= 5  # not collapsed onto a few components


def _config_path(name):
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "configs" / name


def test_default_recipe_clusters_simulated_galaxies_where_the_papers_recipe_cannot(tmp_path):
    """The floor of issue 19 on a CI-sized sky (2,000 GalSim galaxies, 32 px, 23 epochs, fp32 so
    that every CPU computes the same): the default recipe's held-out NMI against the six true
    classes. Measured on this setting (seeds 0, 1, 2): the defaults (mixture KL at 10, 2026-12-07)
    0.334, 0.359, 0.339; with the mixture KL at 1 (2026-12-06) 0.331, 0.374, 0.320; the defaults of
    2026-12-05 (major axis, kl 1/256, no aperture) 0.20-0.26; the paper's recipe
    (configs/galaxies-paper-recipe.yaml) 0.03-0.04."""
    from astrovader.data.cache import Cache, prepare
    from astrovader.data.loader import read_rows
    from astrovader.data.sources.simulate import simulate

    simulate(n=2000, size=85, out=tmp_path / "sky", seed=0, workers=2)
    config = Config.from_preset("cpu").with_overrides({
        "data.image_size": 32, "data.validation_size": 100, "model.n_components": 6, "train.precision": "fp32",
        "train.alpha_epochs": 16, "train.periods": 1, "train.anneal_epochs": 1, "train.static_epochs": 6,
    })
    prepare(tmp_path / "sky" / "catalog.csv", tmp_path / "cache", config.data)
    train_run(tmp_path / "run", config, tmp_path / "cache", progress=False)
    cache = Cache(tmp_path / "cache")
    test = cache.split("test")
    clusters = AstroVaDEr.load(tmp_path / "run").predict(read_rows(cache.images, test["row"].to_numpy()))
    assert label_scores(test["label"].to_numpy(), clusters)["nmi"] > 0.2
