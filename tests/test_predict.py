"""The cluster catalogue: columns, unreadable inputs as rows, bit-identical outputs whatever the
batching, formats, bounded memory, resume after kill -9, and torchrun sharding."""

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.config import Config
from astrovader.data.cache import Cache, prepare
from astrovader.errors import AstroVaDErError, InputError
from astrovader.model.inference import model_outputs
from astrovader.model.io import load_model, save_model
from astrovader.model.vade import VaDE
from astrovader.predict import predict_catalogue, read_predictions
from astrovader.predict.parts import MANIFEST

from conftest import blob_images, class_prior_model


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def trained(blob_cache, tiny_config, tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("run") / "tiny", class_prior_model(blob_cache, tiny_config), tiny_config)


@pytest.fixture(scope="module")
def bad_catalogue(blob_catalogue, tmp_path_factory):
    """40 blob images, then a missing file, a corrupt file and a repeated id."""
    folder = tmp_path_factory.mktemp("bad")
    table = pd.read_csv(blob_catalogue, dtype={"id_str": str}).head(43)
    table["file_loc"] = [str(blob_catalogue.parent / path) for path in table["file_loc"]]
    (folder / "corrupt.npy").write_bytes(b"not an array")
    table.loc[40, "file_loc"] = str(folder / "missing.npy")
    table.loc[41, "file_loc"] = str(folder / "corrupt.npy")
    table.loc[42, "id_str"] = table.loc[0, "id_str"]
    table.to_csv(folder / "catalog.csv", index=False)
    return folder / "catalog.csv"


@pytest.fixture(scope="module")
def large_cache(tiny_config, tmp_path_factory):
    """3,000 blob images prepared at the tiny model's 16 px, from one IDX file."""
    folder = tmp_path_factory.mktemp("large")
    images, _ = blob_images(3000, size=16, seed=1)
    header = b"\x00\x00\x08\x03" + b"".join(value.to_bytes(4, "big") for value in images.shape)
    (folder / "blobs-idx3-ubyte").write_bytes(header + np.round(images * 255).astype(np.uint8).tobytes())
    prepare(folder / "blobs-idx3-ubyte", folder / "cache", tiny_config.data)
    return folder / "cache"


FLOATS = ("gamma_max", "gamma", "posterior", "mu", "logvar", "log_likelihood", "mse")


def float_columns(frame):
    return [name for name in frame.columns if name.rsplit("_", 1)[0] in FLOATS or name in FLOATS]


def assert_same_rows(a, b):
    """Same ids, errors and bit-identical outputs, matched by id (order may differ)."""
    a, b = (frame.set_index("id_str").sort_index(kind="stable") for frame in (a, b))
    assert list(a.index) == list(b.index)
    assert list(a["component"]) == list(b["component"]) and list(a["error"]) == list(b["error"])
    for name in float_columns(a):
        assert np.array_equal(a[name].to_numpy(np.float32), b[name].to_numpy(np.float32), equal_nan=True), name


def test_catalogue_of_a_cache_has_the_documented_columns_and_the_model_outputs(trained, blob_cache, tmp_path):
    summary = predict_catalogue(trained, blob_cache, tmp_path / "catalogue", batch_size=100, workers=0, part_size=128)
    frame = read_predictions(tmp_path / "catalogue")
    numbered = lambda name, count: [f"{name}_{index:02d}" for index in range(count)]  # noqa: E731
    assert list(frame.columns) == [
        "id_str", "split", "component", "gamma_max", *numbered("gamma", 3), *numbered("posterior", 3),
        *numbered("mu", 4), *numbered("logvar", 4), "log_likelihood", "mse", "log_likelihood_quantile", "mse_quantile",
        "ood", "error", "file_loc", "label", "label_name",
    ]
    index = Cache(blob_cache).index
    assert (summary.inputs, summary.errors, summary.computed) == (600, 0, 600)
    assert list(frame["id_str"]) == list(index["id_str"]) and list(frame["split"]) == list(index["split"])
    assert frame[["file_loc", "label", "label_name"]].equals(index[["file_loc", "label", "label_name"]])
    assert (frame["error"] == "").all()
    # This model was saved without a training reference: nothing to compare with, nothing flagged.
    assert frame["mse_quantile"].isna().all() and not frame["ood"].any() and summary.shift["flagged"] is None

    model, _ = load_model(trained)
    expected = model_outputs(model, Cache(blob_cache).images[index["row"].to_numpy()])
    for name in ("gamma", "posterior", "mu", "logvar"):
        columns = [column for column in frame.columns if column.startswith(f"{name}_") and column[-1].isdigit()]
        assert np.array_equal(frame[columns].to_numpy(), expected[name]), name
    for name in ("log_likelihood", "mse"):
        assert np.array_equal(frame[name].to_numpy(), expected[name]), name
    gamma = expected["gamma"]
    assert np.array_equal(frame["component"], gamma.argmax(1)) and np.array_equal(frame["gamma_max"], gamma.max(1))
    assert np.mean(frame["component"] == frame["label"]) > 0.6  # the prior's components are the blob classes
    manifest = json.loads((tmp_path / "catalogue" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"] == 600 and len(manifest["parts"]) == 5
    assert [part["rows"] for part in manifest["parts"]] == [128, 128, 128, 128, 88]


@pytest.fixture(scope="module")
def shifted_catalogue(tmp_path_factory):
    """Blobs as another survey would deliver them: twice the pixel scale (the blob fills half
    the stamp), a square-root stretch and a bright sky."""
    folder = tmp_path_factory.mktemp("shifted")
    images, labels = blob_images(120, size=24, seed=5)
    zoomed = images[:, 6:18, 6:18].repeat(2, axis=1).repeat(2, axis=2)
    stretched = 0.4 + 0.6 * np.sqrt(zoomed)
    ids = [f"s{i:03d}" for i in range(len(images))]
    for identifier, image in zip(ids, stretched):
        np.save(folder / f"{identifier}.npy", image.astype(np.float32))
    pd.DataFrame({"id_str": ids, "file_loc": [f"{i}.npy" for i in ids], "label": labels, "pixscale": 0.8}).to_csv(
        folder / "catalog.csv", index=False)
    return folder / "catalog.csv"


def test_inputs_unlike_the_training_set_are_flagged_and_warned_about(trained, blob_cache, shifted_catalogue, tmp_path):
    from astrovader.analysis.shift import training_reference

    model, metadata = load_model(trained)
    cache = Cache(blob_cache)
    train = cache.split("train")["row"].to_numpy()
    reference = training_reference(model_outputs(model, cache.images[train]))
    assert reference["rows"] == len(train) and len(reference["mse_percentiles"]) == 101
    training_inputs = {"side_px": 24.0, "pixscale_arcsec": 0.4, "field_arcsec": 9.6}
    run = save_model(tmp_path / "run", model, model.config,
                     extra={"training_reference": reference, "training_inputs": training_inputs})

    familiar = predict_catalogue(run, blob_cache, tmp_path / "familiar", workers=0)
    frame = read_predictions(tmp_path / "familiar")
    test = frame[frame["split"] == "test"]
    assert familiar.shift["warning"] is None and familiar.shift["flagged"] < 0.1, familiar.shift
    assert 0.3 < test["mse_quantile"].median() < 0.7 and test["ood"].mean() < 0.1
    assert "warning" not in familiar.line()

    result = CliRunner().invoke(app, ["predict", str(run), str(shifted_catalogue), "--out", str(tmp_path / "shifted"),
                                      "--workers", "0"])
    assert result.exit_code == 0, result.output
    shifted = read_predictions(tmp_path / "shifted")
    assert shifted["ood"].mean() > 0.5 and shifted["mse_quantile"].median() > 0.99
    output = " ".join(result.output.split())
    assert "warning: these 120 inputs look unlike the training data" in output
    assert "flagged" in output and "check the pixel scale, crop and stretch" in output
    assert "their field is 19.2 arcsec across, the training inputs' 9.6" in output
    assert "trained on inputs 24 px at 0.4 arcsec/px (9.6 arcsec across); these are 24 px at 0.8 arcsec/px" in output
    manifest = json.loads((tmp_path / "shifted" / MANIFEST).read_text())
    assert manifest["shift"]["warning"] is not None and manifest["shift"]["flagged"] == pytest.approx(shifted["ood"].mean())


def test_python_api_and_catalogue_agree_bit_for_bit_in_bf16(trained, blob_cache, tmp_path):
    """Every loader takes the run's precision: AstroVaDEr.predict_proba, the report's objects and
    `astrovader predict` give the same gamma, here with bf16 (emulated where not native)."""
    from astrovader.estimator import AstroVaDEr

    model, _ = load_model(trained)
    config = model.config.with_overrides({"train.precision": "bf16"})
    run = save_model(tmp_path / "bf16", model, config)
    predict_catalogue(run, blob_cache, tmp_path / "catalogue", workers=0)
    frame = read_predictions(tmp_path / "catalogue")
    estimator = AstroVaDEr.load(run)
    assert estimator.model_.precision == "bf16"
    cache = Cache(blob_cache)
    gamma = estimator.predict_proba(cache.images[cache.index["row"].to_numpy()])
    assert np.array_equal(frame[[f"gamma_{c:02d}" for c in range(3)]].to_numpy(), gamma)


def test_model_outputs_take_uint8_and_float_arrays_and_tensors_alike(trained, blob_cache):
    model, _ = load_model(trained)
    pixels = np.array(Cache(blob_cache).images[:70])  # a writable copy: torch.from_numpy warns on a read-only map
    expected = model_outputs(model, pixels)
    scaled = pixels.astype(np.float32) / 255
    for given in (torch.from_numpy(pixels), scaled, torch.from_numpy(scaled)):
        outputs = model_outputs(model, given)
        for name, values in expected.items():
            assert np.array_equal(outputs[name], values), name


def test_unreadable_inputs_are_rows_with_a_reason(trained, bad_catalogue, tiny_config, tmp_path):
    from_catalogue = read_predictions(predict_catalogue(trained, bad_catalogue, tmp_path / "a.parquet", workers=0).out)
    prepare(bad_catalogue, tmp_path / "cache", tiny_config.data)
    from_cache = read_predictions(predict_catalogue(trained, tmp_path / "cache", tmp_path / "b", workers=0).out)
    for frame in (from_catalogue, from_cache):
        assert len(frame) == 43  # inputs = rows
        failed = frame[frame["error"] != ""].set_index("file_loc")
        assert len(failed) == 3 and (failed["component"] == -1).all()
        assert failed[float_columns(frame)].isna().all().all()
        assert failed.loc[str(bad_catalogue.parent / "missing.npy"), "error"] == "missing file"
        assert "corrupt" in failed.index[1] and failed["error"].iloc[1]
        assert "duplicate id" in failed["error"].iloc[2] and failed["id_str"].iloc[2] == frame["id_str"].iloc[0]
        fine = frame[frame["error"] == ""]
        measured = [name for name in float_columns(frame) if not name.endswith("_quantile")]  # no reference: NaN
        assert len(fine) == 40 and (fine["component"] >= 0).all() and fine[measured].notna().all().all()
    assert (from_catalogue["split"] == "").all() and set(from_cache["split"]) == {"train", "validation", "test", ""}
    assert_same_rows(from_catalogue, from_cache)  # decoded on the fly = read from the cache


def test_integer_catalogue_columns_stay_integers_beside_rejects(trained, bad_catalogue, tiny_config, tmp_path):
    prepare(bad_catalogue, tmp_path / "cache", tiny_config.data)
    labels = pd.read_csv(bad_catalogue, dtype={"id_str": str}).drop_duplicates("id_str").set_index("id_str")["label"]
    for name in ("cat", "cat.fits", "cat.csv"):
        frame = read_predictions(predict_catalogue(trained, tmp_path / "cache", tmp_path / name, workers=0).out)
        assert frame["label"].dtype == "Int64", name
        fine = frame["error"] == ""
        assert frame.loc[fine, "label"].tolist() == labels[frame.loc[fine, "id_str"]].tolist()
        assert frame.loc[~fine, "label"].isna().all() and (~fine).sum() == 3  # the rejects have no labels
    assert frame["component"].dtype == np.int64  # integers without gaps keep their own type


def test_outputs_are_bit_identical_whatever_batch_size_order_or_workers(trained, blob_catalogue, tmp_path):
    table = pd.read_csv(blob_catalogue, dtype={"id_str": str}).head(40)
    table["file_loc"] = [str(blob_catalogue.parent / path) for path in table["file_loc"]]
    table.to_csv(tmp_path / "in_order.csv", index=False)
    table.sample(frac=1, random_state=3).to_csv(tmp_path / "shuffled.csv", index=False)
    runs = [("in_order", 512, 0), ("in_order", 1, 0), ("shuffled", 7, 2), ("shuffled", 512, 2)]
    frames = [
        read_predictions(predict_catalogue(trained, tmp_path / f"{name}.csv", tmp_path / f"{name}-{batch}", batch,
                                           workers=workers).out)
        for name, batch, workers in runs
    ]
    assert list(frames[2]["id_str"]) == list(pd.read_csv(tmp_path / "shuffled.csv", dtype={"id_str": str})["id_str"])
    for frame in frames[1:]:
        assert_same_rows(frames[0], frame)


def test_formats_read_back_alike_and_follow_the_suffix(trained, bad_catalogue, tmp_path):
    frames = {}
    for name in ("cat", "cat.fits", "cat.csv"):
        summary = predict_catalogue(trained, bad_catalogue, tmp_path / name, workers=0, part_size=16)
        assert (tmp_path / name).is_dir() == (name == "cat")
        frames[name] = read_predictions(summary.out)
    assert not (tmp_path / "cat.fits.parts").exists() and not (tmp_path / "cat.csv.parts").exists()
    for name in ("cat.fits", "cat.csv"):
        assert list(frames[name].columns) == list(frames["cat"].columns)
        assert list(frames[name]["id_str"]) == list(frames["cat"]["id_str"])
        # (CSV cannot tell a missing text from an empty one)
        assert list(frames[name]["label_name"].fillna("")) == list(frames["cat"]["label_name"].fillna(""))
        assert_same_rows(frames["cat"], frames[name])
    joined = tmp_path / "joined.parquet"  # a folder's parts joined into one file
    pq.write_table(pq.read_table(tmp_path / "cat"), joined)
    assert read_predictions(joined).equals(frames["cat"])
    joined.write_text("not parquet")
    with pytest.raises(InputError, match="joined.parquet: not a readable Parquet file"):
        read_predictions(joined)
    with pytest.raises(AstroVaDErError, match="looks like fits"):
        predict_catalogue(trained, bad_catalogue, tmp_path / "x.fits", output_format="csv")
    with pytest.raises(AstroVaDErError, match="format = 'xls'"):
        predict_catalogue(trained, bad_catalogue, tmp_path / "x", output_format="xls")


def test_existing_outputs_are_finished_never_overwritten(trained, bad_catalogue, blob_cache, tmp_path):
    first = predict_catalogue(trained, bad_catalogue, tmp_path / "cat", workers=0)
    again = predict_catalogue(trained, bad_catalogue, tmp_path / "cat", batch_size=3, workers=0)
    assert (first.computed, again.computed, again.inputs, again.errors) == (43, 0, 43, 3)
    with pytest.raises(InputError, match="another model, data, part size"):
        predict_catalogue(trained, bad_catalogue, tmp_path / "cat", workers=0, part_size=10)
    with pytest.raises(InputError, match="another model, data, part size"):
        predict_catalogue(trained, blob_cache, tmp_path / "cat", workers=0)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a predictions folder"):
        predict_catalogue(trained, bad_catalogue, tmp_path / "taken", workers=0)
    (tmp_path / "old.csv").write_text("id_str\n")
    with pytest.raises(InputError, match="exists already"):
        predict_catalogue(trained, bad_catalogue, tmp_path / "old.csv", workers=0)


def test_bad_inputs_and_options_are_one_line_errors(trained, blob_catalogue, tiny_config, tmp_path):
    with pytest.raises(AstroVaDErError, match="batch_size = 0"):
        predict_catalogue(trained, blob_catalogue, tmp_path / "out", batch_size=0)
    with pytest.raises(InputError, match="no such file"):
        predict_catalogue(trained, tmp_path / "nothing.csv", tmp_path / "out")
    bigger = tiny_config.with_overrides({"data.image_size": 32})
    prepare(blob_catalogue, tmp_path / "cache32", bigger.data)
    with pytest.raises(InputError, match="cache32: holds images of shape"):
        predict_catalogue(trained, tmp_path / "cache32", tmp_path / "out")
    with pytest.raises(InputError, match="not a predictions folder"):
        read_predictions(tmp_path)


def test_memory_stays_flat_while_streaming_a_large_cache(trained, large_cache, tmp_path):
    held = []  # Python-side memory after each batch of 32: rows must not pile up
    tracemalloc.start()
    try:
        summary = predict_catalogue(trained, large_cache, tmp_path / "large", batch_size=32, workers=0, part_size=64,
                                    progress=lambda done, total: held.append(tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    assert summary.computed == 3000 and len(held) == -(-3000 // 32)
    # Holding every row would add ~1 MB (pixels + outputs) between the first and last quarter;
    # streaming adds only the few bytes per batch of `held` itself.
    early, late = max(held[len(held) // 8 : len(held) // 4]), max(held[-len(held) // 4 :])
    assert late - early < 100_000, (early, late)
    assert len(list((tmp_path / "large").glob("part-*.parquet"))) == -(-3000 // 64)


def cli(*arguments):
    environment = dict(os.environ, OMP_NUM_THREADS="1", ASTROVADER_ALLOCATOR="system")
    return [sys.executable, "-m", "astrovader", *map(str, arguments)], environment


def test_resume_after_kill_9_loses_and_duplicates_no_row(trained, large_cache, tmp_path):
    out = tmp_path / "killed"
    command, environment = cli(
        "predict", trained, large_cache, "--out", out, "--part-size", 32, "--batch-size", 32, "--workers", 0
    )
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while len(list(out.glob("part-*.parquet"))) < 3 and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = list(out.glob("part-*.parquet"))
    assert 3 <= len(written) < -(-3000 // 32) and not json.loads((out / MANIFEST).read_text())["complete"]
    with pytest.raises(InputError, match="incomplete"):
        read_predictions(out)

    resumed = predict_catalogue(trained, large_cache, out, batch_size=100, workers=2, part_size=32)
    assert resumed.computed == 3000 - sum(pq.read_metadata(part).num_rows for part in written)
    whole = predict_catalogue(trained, large_cache, tmp_path / "whole", batch_size=64, workers=0, part_size=32)
    frame = read_predictions(out)
    assert frame["id_str"].is_unique and len(frame) == 3000
    assert frame.equals(read_predictions(whole.out))
    assert not list(out.glob(".*.part"))


def test_torchrun_ranks_share_the_parts_and_match_one_process(trained, blob_cache, tmp_path):
    command, environment = cli("predict", trained, blob_cache, "--out", tmp_path / "ranks", "--part-size", 50)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *command[1:]]
    result = subprocess.run(torchrun, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-6000:]
    assert "600 inputs = 600 predicted + 0 with an error" in result.stderr.replace("\n", " ")

    manifest = json.loads((tmp_path / "ranks" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["computed_by_rank"] == [300, 300]
    single = CliRunner().invoke(app, ["predict", str(trained), str(blob_cache), "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    assert read_predictions(tmp_path / "ranks").equals(read_predictions(tmp_path / "one"))


def test_real_galaxy_zoo_jpegs_are_decoded_with_the_models_settings(gz1_dir, tmp_path):
    config = Config.from_preset("cpu")
    torch.manual_seed(0)
    save_model(tmp_path / "run", VaDE(config), config)
    table = pd.read_csv(gz1_dir / "catalog.csv", dtype={"id_str": str}).head(24)
    table["file_loc"] = [str(gz1_dir / path) for path in table["file_loc"]]
    table.to_csv(tmp_path / "catalog.csv", index=False)
    summary = predict_catalogue(tmp_path / "run", tmp_path / "catalog.csv", tmp_path / "gz1.csv", workers=0)
    frame = read_predictions(summary.out)
    assert list(frame["id_str"]) == list(table["id_str"]) and (frame["error"] == "").all()
    assert list(frame["gz1_class_name"]) == list(table["gz1_class_name"])
    assert np.isfinite(frame["mse"]).all() and (frame["component"].between(0, 11)).all()
