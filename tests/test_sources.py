"""Secondary sources: found in noisy stamps where they are and nowhere else, and counted as kept
only when the reconstruction holds them."""

import numpy as np
import pandas as pd
import pytest

from astrovader.analysis.sources import find_sources, recovery_summary, recovery_table, source_recovery

SIDE = 64


def blob(row: float, column: float, flux: float, width: float) -> np.ndarray:
    y, x = np.mgrid[:SIDE, :SIDE]
    return flux * np.exp(-0.5 * ((y - row) ** 2 + (x - column) ** 2) / width**2)


def host() -> np.ndarray:
    return 0.1 + blob(31.5, 31.5, 0.6, 5.0)


def noisy(image: np.ndarray, seed: int, sigma: float = 0.02) -> np.ndarray:
    return (image + np.random.default_rng(seed).normal(0, sigma, image.shape))[None].astype(np.float32)


def test_a_companion_is_found_where_it_is_and_kept_only_if_the_reconstruction_has_it():
    companion = blob(47.0, 30.0, 0.3, 1.5)
    inputs = np.stack([noisy(host() + companion, 0)] * 2)
    reconstructions = np.stack([host()[None], (host() + companion)[None]]).astype(np.float32)
    found = source_recovery(inputs, reconstructions)
    assert found["object"].tolist() == [0, 1]
    assert np.all(np.abs(found["row"] - 47) <= 1) and np.all(np.abs(found["column"] - 30) <= 1)
    assert found["radius_px"].iloc[0] == pytest.approx(np.hypot(47 - 31.5, 30 - 31.5), abs=1.5)
    assert found["kept"].tolist() == [False, True]
    assert (found["height_sigma"] > 7).all()
    as_uint8 = (np.clip(inputs, 0, 1) * 255).round().astype(np.uint8)  # the cache's pixels
    assert source_recovery(as_uint8, reconstructions)["kept"].tolist() == [False, True]
    summary = recovery_summary(found, 2)
    assert summary == {"images": 2, "with_sources": 1.0, "sources": 2, "kept": 0.5}
    table = recovery_table(found)
    assert table.loc["all", "sources"] == 2 and table.loc["all", "kept"] == 0.5
    assert table["sources"].iloc[:-1].sum() == 2  # every source in one height bin
    assert list(table.index) == ["7-15 sigma", "15-30 sigma", "30-60 sigma", ">= 60 sigma", "all"]


def test_noise_and_the_central_galaxy_are_not_sources():
    images = np.stack([noisy(host(), seed) for seed in range(20)])
    assert len(source_recovery(images, images)) == 0
    # ... and a faint companion well below the threshold is not one either
    positions, _, _, noise = find_sources(noisy(host() + blob(47.0, 30.0, 0.01, 1.5), 1))
    assert len(positions) == 0 and noise > 0


def test_bands_are_averaged_and_no_source_gives_an_empty_table():
    companion = blob(20.0, 45.0, 0.3, 1.5)
    colour = np.concatenate([noisy(host() + companion, seed) for seed in range(3)])  # (3, H, W)
    positions, heights, _, _ = find_sources(colour)
    assert positions.tolist() == [[20, 45]] and heights[0] > 7
    empty = source_recovery(np.zeros((2, 1, SIDE, SIDE), np.float32), np.zeros((2, 1, SIDE, SIDE), np.float32))
    assert empty.empty and list(empty.columns) == ["object", "row", "column", "radius_px", "height_sigma", "kept"]
    summary = recovery_summary(empty, 2)
    assert summary["sources"] == 0 and summary["with_sources"] == 0 and np.isnan(summary["kept"])
    assert isinstance(recovery_table(empty), pd.DataFrame)
