"""`prepare`: every bad-input kind lands in rejects.csv, inputs = accepted + rejected, stable
disjoint splits, no-op re-runs, resume after kill -9, and the real GZ1 cutouts."""

import gzip
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from PIL import Image
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.config import DataConfig
from astrovader.data.cache import (
    Cache, assign_splits, input_fingerprint, prepare, split_duplicates, split_sizes,
)
from astrovader.data.catalogue import read_catalogue
from astrovader.errors import InputError

CONFIG = DataConfig(image_size=16, crop_fraction=0.75, workers=1)


def _galaxy(size=40, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] - size / 2
    return (200 * np.exp(-(x**2 + y**2) / 50) + rng.uniform(0, 20, (size, size))).astype(np.uint8)


@pytest.fixture
def messy_catalogue(tmp_path):
    """Good images in every format plus one of each bad kind; returns (catalogue, expected reasons)."""
    folder = tmp_path / "data"
    folder.mkdir()
    good = {
        "jpeg": "g.jpg", "png": "g.png", "fits2d": "g2.fits", "fitscube": "g3.fits", "npy": "g.npy",
    }
    Image.fromarray(np.stack([_galaxy()] * 3, -1)).save(folder / good["jpeg"])
    Image.fromarray(_galaxy(seed=1)).save(folder / good["png"])
    fits.PrimaryHDU(_galaxy(seed=2).astype(np.float32)).writeto(folder / good["fits2d"])
    fits.PrimaryHDU(np.stack([_galaxy(seed=3)] * 3).astype(np.float32)).writeto(folder / good["fitscube"])
    np.save(folder / good["npy"], _galaxy(seed=4).astype(np.float32))
    nan_image = _galaxy(seed=5).astype(np.float32)
    nan_image[:5] = np.nan
    fits.PrimaryHDU(nan_image).writeto(folder / "partly_nan.fits")  # policy "zero": accepted

    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image at all")
    Image.fromarray(np.stack([_galaxy(64)] * 3, -1)).save(folder / "cut.jpg")
    (folder / "cut.jpg").write_bytes((folder / "cut.jpg").read_bytes()[:300])
    (folder / "broken.fits").write_bytes(b"SIMPLE  =                    T / broken" + b" " * 50)
    fits.PrimaryHDU(np.full((40, 40), np.nan, dtype=np.float32)).writeto(folder / "all_nan.fits")
    fits.PrimaryHDU(np.zeros((2, 5, 40, 40), dtype=np.float32)).writeto(folder / "4d.fits")
    rows = [(f"ok_{kind}", name) for kind, name in good.items()] + [("ok_nan", "partly_nan.fits")]
    bad = {
        "empty": ("empty.jpg", "empty file"),
        "text": ("text.png", "not an image"),
        "truncated": ("cut.jpg", "truncated"),
        "broken_fits": ("broken.fits", "FITS"),
        "all_nan": ("all_nan.fits", "all pixels are NaN"),
        "wrong_bands": ("4d.fits", "expected a 2-D image or a band cube"),
        "missing": ("nowhere.jpg", "missing file"),
    }
    rows += [(identifier, name) for identifier, (name, _) in bad.items()]
    rows.append(("ok_jpeg", good["png"]))  # duplicate id
    table = pd.DataFrame(rows, columns=["id_str", "file_loc"])
    table["votes"] = np.arange(len(table))
    table.to_csv(folder / "catalog.csv", index=False)
    reasons = {identifier: reason for identifier, (_, reason) in bad.items()}
    return folder / "catalog.csv", reasons


def test_every_bad_input_kind_is_rejected_with_its_reason(messy_catalogue, tmp_path):
    catalogue, expected = messy_catalogue
    summary = prepare(catalogue, tmp_path / "cache", CONFIG)
    assert summary.inputs == summary.accepted + summary.rejected == 14
    assert summary.accepted == 6
    cache = Cache(tmp_path / "cache")
    rejects = cache.rejects.set_index("id_str")
    for identifier, reason in expected.items():
        assert reason in rejects.loc[identifier, "reason"], identifier
    duplicate = cache.rejects[cache.rejects["reason"].str.contains("duplicate id")]
    assert list(duplicate["id_str"]) == ["ok_jpeg"]
    assert sorted(cache.index["id_str"]) == sorted(["ok_jpeg", "ok_png", "ok_fits2d", "ok_fitscube", "ok_npy", "ok_nan"])
    assert cache.images.shape == (13, 1, 16, 16)  # one row per unique id
    assert "votes" in cache.index.columns  # catalogue columns travel with the index


def test_rerun_is_a_no_op_and_other_settings_are_refused(messy_catalogue, tmp_path):
    catalogue, _ = messy_catalogue
    prepare(catalogue, tmp_path / "cache", CONFIG)
    before = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cache").iterdir()}
    again = prepare(catalogue, tmp_path / "cache", CONFIG)
    assert again.decoded_now == 0 and again.accepted == 6
    after = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cache").iterdir()}
    assert before == after
    with pytest.raises(InputError, match="other inputs or settings"):
        prepare(catalogue, tmp_path / "cache", CONFIG.model_copy(update={"image_size": 32}))


def labelled_catalogue(folder, labels: bool = True):
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"g{i}.npy", _galaxy(seed=i).astype(np.float32))
    table = pd.DataFrame({"id_str": ["a", "b", "c"], "file_loc": [f"g{i}.npy" for i in range(3)]})
    if labels:
        table["label"], table["label_name"] = [2, 0, 2], ["spiral", "elliptical", "spiral"]
    table.to_csv(folder / "catalog.csv", index=False)
    return folder / "catalog.csv"


def test_cache_checks_the_model_settings_and_names_its_classes(tmp_path):
    prepare(labelled_catalogue(tmp_path / "data"), tmp_path / "cache", CONFIG)
    cache = Cache(tmp_path / "cache")
    cache.check_matches(CONFIG.model_copy(update={"crop_fraction": 0.5, "workers": 2}))  # same pixels' shape
    for change in ({"image_size": 32}, {"color": "rgb"}):
        with pytest.raises(InputError, match="cache: holds 16 px gray images but the config wants"):
            cache.check_matches(CONFIG.model_copy(update=change))
    assert cache.label_names == ["elliptical", "spiral"]
    prepare(labelled_catalogue(tmp_path / "plain", labels=False), tmp_path / "plain-cache", CONFIG)
    assert Cache(tmp_path / "plain-cache").label_names is None


def test_checking_a_cache_for_the_report_or_generate_does_not_import_lightning(tmp_path):
    prepare(labelled_catalogue(tmp_path / "data"), tmp_path / "cache", CONFIG)
    code = f"""
import sys
from pathlib import Path
from astrovader.config import Config
from astrovader.generate.run import load_galaxies
from astrovader.model.vade import VaDE
from astrovader.runs import Run
model = VaDE(Config.from_preset("tiny"))
cache = Path({str(tmp_path / "cache")!r})
Run(cache, model, {{}}, {{}}).cache(cache)
load_galaxies(cache, cache, "all", model)
print(sorted(name for name in sys.modules if name.startswith("lightning")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_duplicates_and_fingerprint_of_the_inputs():
    table = pd.DataFrame({"id_str": ["a", "b", "a", "", "c"], "file_loc": ["1", "2", "3", "4", "5"], "v": range(5)})
    unique, rejects = split_duplicates(table)
    assert unique["id_str"].tolist() == ["a", "b", "c"] and unique["v"].tolist() == [0, 1, 4]
    assert rejects.to_dict("list") == {
        "id_str": ["a", ""], "file_loc": ["3", "4"], "reason": ["duplicate id (first occurrence kept)", "empty id"],
    }
    fingerprint = input_fingerprint(table, CONFIG)
    assert fingerprint == input_fingerprint(table.assign(v=0), CONFIG.model_copy(update={"workers": 3}))
    assert fingerprint != input_fingerprint(table.iloc[::-1], CONFIG)
    assert fingerprint != input_fingerprint(table, CONFIG.model_copy(update={"image_size": 32}))
    assert fingerprint != input_fingerprint(table, CONFIG.model_copy(update={"split_seed": 1}))


def test_splits_follow_the_paper_and_are_stable_and_disjoint():
    config = DataConfig()
    assert split_sizes(205_700, config) == (164_500, 5_000, 36_200)  # 80 % in whole hundreds, 5,000 validation
    assert split_sizes(6_664, config) == (5_300, 333, 1_031)  # 5 % validation when smaller than 5,000
    first, second = assign_splits(1000, config), assign_splits(1000, config)
    np.testing.assert_array_equal(first, second)
    assert set(first) == {"train", "validation", "test"} and (first == "train").sum() == 800
    other = assign_splits(1000, config.model_copy(update={"split_seed": 1}))
    assert (first != other).any()


def test_where_selection_and_table_formats(messy_catalogue, tmp_path):
    catalogue, _ = messy_catalogue
    table = pd.read_csv(catalogue)
    table.to_parquet(tmp_path / "catalog.parquet")
    Table.from_pandas(table).write(tmp_path / "catalog.fits")
    for path in (catalogue, tmp_path / "catalog.parquet", tmp_path / "catalog.fits"):
        selected = read_catalogue(path, DataConfig(where="votes < 3"))
        assert list(selected["id_str"]) == ["ok_jpeg", "ok_png", "ok_fits2d"], path.name
        assert selected["file_loc"].map(os.path.isabs).all()
    with pytest.raises(InputError, match="no column 'objid'"):
        read_catalogue(catalogue, DataConfig(id_column="objid"))
    with pytest.raises(InputError, match="selection"):
        read_catalogue(catalogue, DataConfig(where="no_such_column > 1"))


def test_long_integer_ids_keep_every_digit(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((8, 8)))
    (tmp_path / "c.csv").write_text("objid,file_loc\n587722981742084144,a.npy\n")
    table = read_catalogue(tmp_path / "c.csv", DataConfig(id_column="objid"))
    assert table["id_str"].tolist() == ["587722981742084144"]


def test_folder_of_images_and_idx_files(tmp_path):
    for i in range(3):
        Image.fromarray(_galaxy(seed=i)).save(tmp_path / f"gal{i}.png")
    table = read_catalogue(tmp_path)
    assert table["id_str"].tolist() == ["gal0", "gal1", "gal2"]
    idx = tmp_path / "idx"
    idx.mkdir()
    images = np.random.default_rng(0).integers(0, 255, (5, 28, 28), dtype=np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    (idx / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    (idx / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + labels.tobytes())
    summary = prepare(idx, tmp_path / "cache", DataConfig(image_size=28, crop_fraction=1.0, scaling="fixed", orientation="none", workers=1))
    cache = Cache(tmp_path / "cache")
    assert summary.accepted == 5 and cache.index["label"].tolist() == labels.tolist()
    np.testing.assert_array_equal(cache.images[:, 0], images)


def test_real_fashion_mnist_idx(fashion_dir):
    from astrovader.data.idx import load_idx_dataset

    images, labels = load_idx_dataset(fashion_dir, "test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


def test_resume_after_kill_9(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3000):
        Image.fromarray(_galaxy(64, seed=i % 50)).save(folder / f"g{i:05d}.png")
    out = tmp_path / "cache"
    command = [sys.executable, "-m", "astrovader", "prepare", str(folder), "--out", str(out), "--workers", "1"]
    environment = dict(os.environ, ASTROVADER_ALLOCATOR="system")
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if (out / "status.npy").exists() and (np.load(out / "status.npy") > 0).sum() >= 512:
            break
        time.sleep(0.02)
    assert process.poll() is None, "prepare finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = int((np.load(out / "status.npy") > 0).sum())
    assert 0 < done_before < 3000
    summary = prepare(folder, out, DataConfig(workers=1))
    assert summary.decoded_now == 3000 - done_before
    assert summary.accepted == 3000 and summary.rejected == 0
    reference = tmp_path / "reference"
    prepare(folder, reference, DataConfig(workers=2))
    np.testing.assert_array_equal(Cache(out).images, Cache(reference).images)
    pd.testing.assert_frame_equal(Cache(out).index, Cache(reference).index)


def test_real_gz1_cutouts(gz1_dir, tmp_path):
    catalogue = pd.read_csv(gz1_dir / "catalog.csv", dtype={"id_str": str}).head(120)
    catalogue["file_loc"] = [str(gz1_dir / path) for path in catalogue["file_loc"]]
    catalogue.to_csv(tmp_path / "subset.csv", index=False)
    result = CliRunner().invoke(app, ["prepare", str(tmp_path / "subset.csv"), "--out", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "120 inputs = 120 accepted + 0 rejected" in result.output.replace("\n", " ")
    cache = Cache(tmp_path / "cache")
    assert cache.images.shape == (120, 1, 64, 64)
    # The default sky-aware stretch: each galaxy's peak at 1, its sky (the border) at sky_level 0.2;
    # galaxies are centred and bright.
    assert (cache.images.reshape(120, -1).max(1) == 255).all()
    border = np.concatenate([cache.images[:, 0, :3].reshape(120, -1), cache.images[:, 0, -3:].reshape(120, -1)], 1)
    assert np.abs(np.median(border, 1) - 0.2 * 255).max() < 10
    centre = cache.images[:, 0, 24:40, 24:40].mean()
    assert centre > 2 * cache.images[:, 0].mean()
    assert set(cache.index["gz1_class_name"]) <= {"elliptical", "spiral_cw", "spiral_acw", "edge_on", "dont_know", "merger"}


def test_images_smaller_than_a_pixel_crop_are_rejected(tmp_path):
    Image.fromarray(_galaxy(40)).save(tmp_path / "small.png")
    Image.fromarray(_galaxy(64)).save(tmp_path / "large.png")
    summary = prepare(tmp_path, tmp_path / "cache", DataConfig(crop_pixels=48, image_size=16, workers=1))
    rejects = Cache(tmp_path / "cache").rejects
    assert summary.accepted == 1 and rejects["id_str"].tolist() == ["small"]
    assert "smaller than the 48 px crop" in rejects["reason"].iloc[0]
