"""The GalSim simulation: deterministic, self-consistent, and its truth describes its pixels."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.config import DataConfig
from astrovader.data.cache import prepare
from astrovader.data.sources.galaxy_model import PIXEL_SCALE
from astrovader.data.sources.simulate import simulate
from astrovader.errors import AstroVaDErError

SEED = 11
N = 160
SIZE = 64
PRIMARY_COLUMNS = [
    "bulge_to_total", "sersic_n", "bulge_hlr_arcsec", "disk_hlr_arcsec", "inclination_deg",
    "position_angle_deg", "psf_fwhm_arcsec", "sky_level_e", "snr", "flux_e",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One simulation shared by the read-only tests; progress calls recorded."""
    out = tmp_path_factory.mktemp("sim")
    calls = []
    summary = simulate(N, SIZE, out, seed=SEED, companion_fraction=0.5, workers=1,
                       progress=lambda done, total: calls.append((done, total)))
    return out, pd.read_parquet(out / "truth.parquet"), summary, calls


def pixels(out, file_loc) -> np.ndarray:
    return fits.getdata(out / file_loc).astype(np.float64)


def test_summary_and_progress(run):
    out, truth, summary, calls = run
    assert summary.stamps == N and summary.with_companions == int(truth["has_companion"].sum())
    assert "stamps/s" in summary.line() and str(N) in summary.line()
    assert calls[-1] == (N, N)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_catalogue_truth_and_images_agree(run):
    out, truth, _, _ = run
    catalog = pd.read_csv(out / "catalog.csv", dtype={"id_str": str})
    assert list(catalog.columns) == ["id_str", "file_loc", "label", "label_name"]
    assert len(catalog) == len(truth) == N and catalog["id_str"].is_unique
    assert catalog["file_loc"].tolist() == [f"images/{id_str}.fits" for id_str in catalog["id_str"]]
    assert (catalog[["id_str", "label", "label_name"]].to_numpy() == truth[["id_str", "label", "label_name"]].to_numpy()).all()
    assert sorted(path.name for path in (out / "images").iterdir()) == sorted(f"{i}.fits" for i in truth["id_str"])
    for row in truth.sample(10, random_state=0).itertuples():
        with fits.open(out / row.file_loc) as hdus:
            hdus.verify("exception")  # a valid FITS file, whatever wrote it
            header, data = hdus[0].header, hdus[0].data
        assert data.dtype.name.endswith("float32") and data.shape == (SIZE, SIZE)
        assert header["OBJECT"] == row.id_str and header["LABEL"] == row.label and header["CLASS"] == row.label_name
        assert header["PA"] == pytest.approx(row.position_angle_deg) and header["NCOMP"] == row.n_companions
        for i, dx in enumerate(row.companion_dx_px, start=1):
            assert header[f"C{i}DX"] == pytest.approx(dx)
    settings = json.loads((out / "simulation.json").read_text())
    assert (settings["n"], settings["size"], settings["seed"], settings["companion_fraction"]) == (N, SIZE, SEED, 0.5)


def test_labels_follow_the_documented_thresholds(run):
    _, truth, _, _ = run
    bulge = truth["bulge_to_total"] > 0.6
    edge_on = ~bulge & (truth["inclination_deg"] > 70)
    expected_morphology = np.where(bulge, "bulge-dominated", np.where(edge_on, "disk edge-on", "disk face-on"))
    assert (truth["morphology"] == expected_morphology).all()
    assert (truth["has_companion"] == (truth["n_companions"] > 0)).all()
    expected_label = 2 * np.where(bulge, 0, np.where(edge_on, 2, 1)) + truth["has_companion"].astype(int)
    assert (truth["label"] == expected_label).all()
    names = truth["morphology"] + np.where(truth["has_companion"], " + companion", "")
    assert (truth["label_name"] == names).all()
    assert set(truth["label"]) == set(range(6))  # every class occurs
    assert set(truth["sersic_n"]) <= {1.5, 2.5, 3.5, 4.0}
    assert ((truth["bulge_to_total"] >= 0) & (truth["bulge_to_total"] <= 1)).all()
    assert (truth["bulge_flux_e"] + truth["disk_flux_e"]).to_numpy() == pytest.approx(truth["flux_e"].to_numpy())


def test_companion_fraction_and_counts(run):
    _, truth, _, _ = run
    assert abs(truth["has_companion"].mean() - 0.5) < 0.12
    with_companions = truth[truth["has_companion"]]
    assert with_companions["n_companions"].between(1, 3).all()
    for row in with_companions.itertuples():
        assert len(row.companion_dx_px) == len(row.companion_flux_e) == len(row.companion_kind) == row.n_companions
        # Centres inside the central 75 % crop, which prepare keeps.
        assert np.all(np.abs(row.companion_dx_px) < 0.375 * SIZE) and np.all(np.abs(row.companion_dy_px) < 0.375 * SIZE)


def weighted_moments(image: np.ndarray, sigma: float) -> tuple[float, float]:
    """(angle in degrees CCW from +x = columns, in [0, 180); axis ratio) of Gaussian-weighted
    second moments about the stamp centre."""
    side = image.shape[0]
    y, x = np.mgrid[:side, :side] - (side - 1) / 2
    weighted = image * np.exp(-(x**2 + y**2) / (2 * sigma**2))
    xx, yy, xy = (weighted * x * x).sum(), (weighted * y * y).sum(), (weighted * x * y).sum()
    angle = math.degrees(0.5 * math.atan2(2 * xy, xx - yy)) % 180
    spread = math.hypot((xx - yy) / 2, xy)
    return angle, math.sqrt(((xx + yy) / 2 - spread) / ((xx + yy) / 2 + spread))


def test_disk_shapes_match_the_truth(run):
    out, truth, _, _ = run
    alone = truth[~truth["has_companion"] & (truth["bulge_to_total"] < 0.3)]
    edge_on = alone[alone["morphology"] == "disk edge-on"]
    face_on = alone[(alone["morphology"] == "disk face-on") & (alone["inclination_deg"] < 40)]
    assert len(edge_on) >= 4 and len(face_on) >= 4
    for row in edge_on.itertuples():
        angle, axis_ratio = weighted_moments(pixels(out, row.file_loc), row.disk_hlr_arcsec / PIXEL_SCALE)
        assert abs((angle - row.position_angle_deg + 90) % 180 - 90) < 5, row.id_str
        assert axis_ratio < 0.85, row.id_str
    for row in face_on.itertuples():
        _, axis_ratio = weighted_moments(pixels(out, row.file_loc), row.disk_hlr_arcsec / PIXEL_SCALE)
        assert axis_ratio > 0.85, row.id_str


def test_companions_are_where_the_truth_says(run):
    """The primary is point-symmetric about the centre, so image - image rotated by 180 deg holds
    only companions: a flux excess at each stated offset, nothing at an empty decoy position."""
    out, truth, _, _ = run
    found, decoys = [], []
    for row in truth[truth["has_companion"]].itertuples():
        image = pixels(out, row.file_loc)
        asymmetric = image - image[::-1, ::-1]
        side = image.shape[0]
        y, x = np.mgrid[:side, :side] - (side - 1) / 2
        offsets = np.column_stack([row.companion_dx_px, row.companion_dy_px])

        def significance(position):
            inside = (x - position[0]) ** 2 + (y - position[1]) ** 2 <= 2.5**2
            return asymmetric[inside].sum() / (row.noise_sigma_e * math.sqrt(2 * inside.sum()))

        def far_from_sources(position, skip=None):
            others = np.delete(offsets, skip, axis=0) if skip is not None else offsets
            return bool(np.all(np.hypot(*(others - position).T) > 6) and np.all(np.hypot(*(others + position).T) > 6))

        for i, offset in enumerate(offsets):
            if far_from_sources(-offset, skip=i):  # its mirror image is not another companion
                found.append(significance(offset))
            decoy = np.array([-offset[1], offset[0]])  # the same distance, 90 deg away
            if far_from_sources(decoy):
                decoys.append(significance(decoy))
    assert len(found) > 50 and len(decoys) > 50
    # The faintest companions (0.1 of a S/N 50 primary) are still > 3 sigma; decoys pick up
    # only noise and the wings of nearby sources.
    assert min(found) > 3 and np.median(found) > 10
    assert np.median(np.abs(decoys)) < 1.5 and np.mean(np.abs(decoys) < 3) > 0.85


def test_same_seed_same_stamps_whatever_the_workers_or_n(run, tmp_path):
    out, truth, _, _ = run
    n = 24
    simulate(n, SIZE, tmp_path, seed=SEED, companion_fraction=0.5, workers=2)
    again = pd.read_parquet(tmp_path / "truth.parquet")
    pd.testing.assert_frame_equal(again, truth.iloc[:n])
    for file_loc in truth["file_loc"].iloc[:n]:
        assert (tmp_path / file_loc).read_bytes() == (out / file_loc).read_bytes()


def test_another_seed_other_stamps(run, tmp_path):
    out, truth, _, _ = run
    simulate(4, SIZE, tmp_path, seed=SEED + 1, companion_fraction=0.5, workers=1)
    other = pd.read_parquet(tmp_path / "truth.parquet")
    assert (other["position_angle_deg"].to_numpy() != truth["position_angle_deg"].iloc[:4].to_numpy()).all()
    for file_loc in other["file_loc"]:
        assert not np.array_equal(pixels(tmp_path, file_loc), pixels(out, file_loc))


def test_companion_fraction_extremes_keep_the_primaries(tmp_path):
    simulate(12, 32, tmp_path / "none", seed=5, companion_fraction=0.0, workers=1)
    simulate(12, 32, tmp_path / "all", seed=5, companion_fraction=1.0, workers=1)
    none = pd.read_parquet(tmp_path / "none" / "truth.parquet")
    every = pd.read_parquet(tmp_path / "all" / "truth.parquet")
    assert not none["has_companion"].any() and every["has_companion"].all()
    pd.testing.assert_frame_equal(none[PRIMARY_COLUMNS], every[PRIMARY_COLUMNS])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n": 0}, "n = 0"),
        ({"size": 7}, "size = 7"),
        ({"companion_fraction": -0.1}, "companion_fraction = -0.1"),
        ({"companion_fraction": 1.5}, "companion_fraction = 1.5"),
        ({"companion_fraction": float("nan")}, "companion_fraction = nan"),
        ({"seed": -1}, "seed = -1"),
        ({"workers": 0}, "workers = 0"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, arguments, message):
    settings = {"n": 2, "size": 16, "out": tmp_path / "sim", **arguments}
    with pytest.raises(AstroVaDErError, match=message) as error:
        simulate(**settings)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "sim").exists()


def test_out_must_be_a_folder(tmp_path):
    existing_file = tmp_path / "file"
    existing_file.write_text("not a folder")
    with pytest.raises(AstroVaDErError, match="out = .*: exists and is not a folder"):
        simulate(2, 16, existing_file)


def test_prepare_reads_every_stamp(run, tmp_path):
    out, truth, _, _ = run
    config = DataConfig(image_size=16, workers=1)
    summary = prepare(out / "catalog.csv", tmp_path / "cache", config)
    assert (summary.inputs, summary.accepted, summary.rejected) == (N, N, 0)
    index = pd.read_parquet(tmp_path / "cache" / "index.parquet")
    assert index.set_index("id_str")["label"].to_dict() == truth.set_index("id_str")["label"].to_dict()


def test_cli_simulate(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["simulate", "--n", "20", "--size", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "stamps/s" in result.output
    catalog = pd.read_csv(out / "catalog.csv")
    assert len(catalog) == 20 and all((out / file_loc).is_file() for file_loc in catalog["file_loc"])
    assert fits.getdata(out / catalog["file_loc"][0]).shape == (48, 48)
