"""Generation (paper Figs. 9-12): synthetic galaxies streamed to disk, the travelling-salesperson
tour, latent traversal, deblending, pair interpolation, figures, the CLI and the estimator.

The model is the tiny preset with random network weights, its embedding of the blob images
standardised and a mixture prior fitted to it (no training needed: generation only needs a
decoder and a prior, and clustering quality is not under test here)."""

import itertools

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.io import fits
from PIL import Image
from typer.testing import CliRunner

from astrovader.analysis import clusters
from astrovader.cli import app
from astrovader.data.cache import Cache
from astrovader.errors import AstroVaDErError, InputError
from astrovader.estimator import AstroVaDEr
from astrovader.generate.figures import report_figures, samples_png, strip_figure, traversal_figure
from astrovader.generate.latents import (
    Traversal, deblend, interpolate, iter_samples, sample_images, sample_latents, traversal,
)
from astrovader.atomic import read_json, write_json_atomic
from astrovader.generate.run import load_galaxies
from astrovader.generate.tour import shortest_tour, top_members, tour, tour_length
from astrovader.generate.writers import write_samples
from astrovader.model.inference import decode, model_outputs
from astrovader.model.io import load_model, save_model
from astrovader.model.vade import VaDE
from astrovader.train.gmm import fit_gmm


@pytest.fixture(scope="module")
def run(blob_cache, tiny_config, tmp_path_factory):
    torch.manual_seed(0)
    model = VaDE(tiny_config).eval()
    images = Cache(blob_cache).images[:]
    mu = model_outputs(model, images, reconstruct=False)["mu"]
    with torch.no_grad():  # standardise the random embedding, as training would spread it
        head = model.encoder.mu
        head.weight.div_(torch.from_numpy(mu.std(0))[:, None])
        head.bias.sub_(torch.from_numpy(mu.mean(0))).div_(torch.from_numpy(mu.std(0)))
    mu = model_outputs(model, images, reconstruct=False)["mu"]
    mixture = fit_gmm(mu, tiny_config.model.n_components, seed=0)
    model.prior.set_from_gmm(mixture.weights_, mixture.means_, mixture.covariances_)
    folder = tmp_path_factory.mktemp("generate") / "run"
    save_model(folder, model, tiny_config)
    write_json_atomic(folder / "run.json", {"data": {"kind": "cache", "cache": str(blob_cache)}})
    return folder


@pytest.fixture(scope="module")
def model(run):
    return load_model(run)[0]


@pytest.fixture(scope="module")
def galaxies(run, model):
    """(ids, uint8 pixels, model outputs) of the blob cache's test split."""
    _, ids, pixels = load_galaxies(run, None, "test", model)
    return ids, pixels, model_outputs(model, pixels, reconstruct=False)


def in_range(images):
    return np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


# -- synthetic images (Fig. 9) -------------------------------------------------------------------
def test_synthetic_images_are_finite_in_range_and_from_the_chosen_components(model):
    images, components, z = sample_images(model, 130, seed=1)
    assert images.shape == (130, 1, 16, 16) and images.dtype == np.float32 and z.shape == (130, 4)
    assert in_range(images) and images.max() > 0
    assert set(components) <= {0, 1, 2}
    assert np.array_equal(decode(model, z), images)
    _, subset, _ = sample_images(model, 130, components=[2, 0], seed=1)
    assert set(subset) == {0, 2}
    _, single, at_mean = sample_images(model, 10, components=1, variance_scale=0.0)
    assert (single == 1).all() and np.allclose(at_mean, model.prior.means[1].detach().numpy())
    for bad in (3, -1, []):
        with pytest.raises(AstroVaDErError, match="component"):
            sample_images(model, 5, components=bad)
    with pytest.raises(AstroVaDErError, match="variance_scale"):
        sample_images(model, 5, variance_scale=-1)


def test_components_and_latents_follow_the_prior(model):
    weights = model.prior.log_weights().exp().detach().numpy()
    count = 20000  # 3-sigma frequency error < 0.011
    components, _ = sample_latents(model, count, seed=0)
    assert np.allclose(np.bincount(components, minlength=3) / count, weights, atol=0.015)
    subset, _ = sample_latents(model, count, components=[0, 2], seed=0)
    expected = weights[[0, 2]] / weights[[0, 2]].sum()
    assert not (subset == 1).any() and np.allclose(np.bincount(subset, minlength=3)[[0, 2]] / count, expected, atol=0.015)
    _, z = sample_latents(model, count, components=2, seed=0, variance_scale=0.5)
    assert np.allclose(z.mean(0), model.prior.means[2].detach().numpy(), atol=0.05 * z.std(0).max())
    halved = 0.5 * model.prior.log_variances[2].exp().detach().numpy()
    assert np.allclose(z.var(0), halved, rtol=0.06)


def test_same_seed_same_images_whatever_the_chunk_or_the_count(model):
    images, components, z = sample_images(model, 150, seed=3)
    again = sample_images(model, 150, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((images, components, z), again))
    assert not np.array_equal(sample_images(model, 150, seed=4)[2], z)
    assert np.array_equal(sample_images(model, 70, seed=3)[0], images[:70])  # fewer images: a prefix
    later_components, later_z = sample_latents(model, 50, seed=3, start=100)
    assert np.array_equal(later_components, components[100:]) and np.array_equal(later_z, z[100:])
    chunks = list(iter_samples(model, 150, seed=3, chunk=1))  # rounded up to blocks of 64
    assert [len(chunk[2]) for chunk in chunks] == [64, 64, 22]
    assert np.array_equal(np.concatenate([chunk[2] for chunk in chunks]), images)


@pytest.mark.parametrize("image_format, table_format", [("npy", "parquet"), ("fits", "csv")])
def test_samples_stream_to_disk_identically_for_any_chunk_size(model, tmp_path, image_format, table_format):
    images, components, z = sample_images(model, 150, components=[0, 2], seed=5)
    for chunk in (1, 1000):
        out = tmp_path / f"chunk-{chunk}"
        calls = []
        summary = write_samples(model, out, 150, [0, 2], seed=5, image_format=image_format,
                                table_format=table_format, chunk=chunk, progress=lambda done, total: calls.append(done))
        if image_format == "npy":
            stored = np.load(out / "samples.npy")
        else:
            with fits.open(out / "samples.fits") as hdus:
                assert hdus[0].header["NAXIS"] == 3 and hdus[0].header["SEED"] == 5
                stored = hdus[0].data[:, None]
        assert np.array_equal(stored, images)
        table = pd.read_parquet(out / "samples.parquet") if table_format == "parquet" else pd.read_csv(out / "samples.csv")
        assert list(table.columns) == ["index", "component", "z_00", "z_01", "z_02", "z_03"]
        assert table["index"].tolist() == list(range(150)) and np.array_equal(table["component"], components)
        assert np.allclose(table.filter(like="z_").to_numpy(), z, rtol=1e-6, atol=0)
        assert summary["per_component"] == np.bincount(components, minlength=3).tolist()
        assert summary["grids"] == {0: "samples_component_00.png", 2: "samples_component_02.png"}
        assert sorted(path.name for path in out.glob("*.png")) == ["samples_component_00.png", "samples_component_02.png"]
        assert calls[-1] == 150 and len(calls) == (3 if chunk == 1 else 1)
        assert not list(out.glob(".*.part"))  # temporary files renamed into place


def test_bad_formats_and_counts_are_named(model, tmp_path):
    for arguments, message in (({"n": 0}, "n = 0"), ({"n": 5, "image_format": "png"}, "image format 'png'"),
                               ({"n": 5, "table_format": "xlsx"}, "table format 'xlsx'"), ({"n": 5, "chunk": 0}, "chunk = 0")):
        with pytest.raises(AstroVaDErError, match=message):
            write_samples(model, tmp_path / "bad", **arguments)
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


# -- tour (Fig. 10) ------------------------------------------------------------------------------
def brute_force_length(points, closed):
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    count = len(points)
    rest = np.array(list(itertools.permutations(range(1, count)))) if closed else None
    orders = np.hstack([np.zeros((len(rest), 1), int), rest]) if closed else np.array(list(itertools.permutations(range(count))))
    lengths = distances[orders[:, :-1], orders[:, 1:]].sum(1)
    return (lengths + distances[orders[:, -1], orders[:, 0]] if closed else lengths).min()


@pytest.mark.parametrize("closed", [True, False])
def test_shortest_tour_is_exact(closed):
    points = np.random.default_rng(0).normal(size=(8, 5))
    order, optimal = shortest_tour(points, closed)
    assert sorted(order) == list(range(8)) and optimal
    assert tour_length(points, order, closed) == pytest.approx(brute_force_length(points, closed), rel=1e-5)


def test_paper_sized_tour_is_a_deterministic_permutation_no_longer_than_index_order():
    points = np.random.default_rng(1).normal(size=(12, 20))
    order, optimal = shortest_tour(points)
    assert sorted(order) == list(range(12)) and order[0] == 0 and optimal
    assert tour_length(points, order) <= tour_length(points, range(12)) * (1 + 1e-6)
    assert np.array_equal(shortest_tour(points)[0], order)
    assert list(shortest_tour(points[:2])[0]) == [0, 1]


def test_most_probable_member_is_the_top_member_with_the_highest_gamma():
    gamma = np.array([[0.7, 0.3, 0.0], [0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.5, 0.45, 0.05], [0.1, 0.85, 0.05]])
    assert top_members(gamma) == {0: 1, 1: 4}  # component 2 is nobody's top


@pytest.mark.parametrize("closed", [True, False])
def test_tour_legs_join_the_reconstructions_of_the_most_probable_members(model, galaxies, closed):
    outputs = galaxies[2]
    members = top_members(outputs["gamma"])
    assert len(members) >= 2
    result = tour(model, outputs["mu"], outputs["gamma"], steps=5, closed=closed)
    legs = len(members) if closed else len(members) - 1
    assert sorted(result.components) == sorted(members)
    assert [members[c] for c in result.components] == list(result.members)
    assert result.images.shape == (legs, 5, 1, 16, 16) and result.z.shape == (legs, 5, 4) and in_range(result.images)
    assert result.length <= result.identity_length * (1 + 1e-6) and result.optimal and result.closed == closed
    stops = outputs["mu"][result.members]
    assert np.allclose(result.z[:, 0], stops[:legs]) and np.allclose(result.z[:, -1], np.roll(stops, -1, 0)[:legs])
    reconstructions = decode(model, stops)
    assert np.allclose(result.images[:, 0], reconstructions[:legs], atol=1e-6)
    assert np.allclose(result.images[:, -1], np.roll(reconstructions, -1, 0)[:legs], atol=1e-6)
    with pytest.raises(AstroVaDErError, match="need 2 or more"):
        top = np.flatnonzero(outputs["gamma"].argmax(1) == result.components[0])
        tour(model, outputs["mu"][top], outputs["gamma"][top])


# -- traversal (Fig. 11) -------------------------------------------------------------------------
def test_traversal_rows_vary_only_their_own_variable_from_minimum_to_maximum(model, galaxies):
    mu = galaxies[2]["mu"]
    result = traversal(model, mu, steps=7)
    assert result.z.shape == (4, 7, 4) and result.images.shape == (4, 7, 1, 16, 16) and in_range(result.images)
    for j in range(4):
        assert np.allclose(np.delete(result.z[j], j, axis=1), np.delete(mu.mean(0), j))
        assert np.allclose(result.z[j, :, j], np.linspace(mu[:, j].min(), mu[:, j].max(), 7), rtol=1e-6)
        assert not np.array_equal(result.images[j, 0], result.images[j, -1])
    with pytest.raises(AstroVaDErError, match="steps = 1"):
        traversal(model, mu, steps=1)


# -- deblending (Fig. 12) and pairs --------------------------------------------------------------
def test_deblending_moves_towards_the_closest_member_of_the_clean_component(model, galaxies):
    _, pixels, outputs = galaxies
    labels = outputs["gamma"].argmax(1)
    target = 0
    clean = next(c for c in np.unique(labels) if c != labels[target])
    result = deblend(model, pixels, target, int(clean), steps=6, outputs=outputs)
    members = np.flatnonzero(labels == clean)
    errors = [((pixels[m] / 255.0 - pixels[target] / 255.0) ** 2).mean() for m in members]
    assert result.partner == members[int(np.argmin(errors))] and result.mse == pytest.approx(min(errors), rel=1e-5)
    assert result.images.shape == (6, 1, 16, 16) and in_range(result.images)
    assert np.allclose(result.z[0], outputs["mu"][target]) and np.allclose(result.z[-1], outputs["mu"][result.partner])
    assert np.allclose(result.images[0], decode(model, outputs["mu"][[target]])[0], atol=1e-6)
    own = np.flatnonzero(labels == labels[target])
    with pytest.raises(AstroVaDErError, match=f"clean component {clean}: none of the {len(own)}"):
        deblend(model, pixels[own], 0, int(clean))
    with pytest.raises(AstroVaDErError, match="component 7"):
        deblend(model, pixels, target, 7)
    with pytest.raises(AstroVaDErError, match="target 999"):
        deblend(model, pixels, 999, int(clean))


def test_interpolation_is_linear_between_the_two_latents(model, galaxies):
    mu = galaxies[2]["mu"]
    z, images = interpolate(model, mu[0], mu[1], steps=5)
    assert z.shape == (5, 4) and images.shape == (5, 1, 16, 16) and in_range(images)
    assert np.allclose(z[0], mu[0]) and np.allclose(z[-1], mu[1]) and np.allclose(z[2], (mu[0] + mu[1]) / 2)
    assert np.array_equal(images, decode(model, z))
    with pytest.raises(AstroVaDErError, match="steps = 1"):
        interpolate(model, mu[0], mu[1], steps=1)


def test_figures_are_image_grids_with_labelled_rows_columns_title_and_blank_cells(tmp_path):
    images = np.random.default_rng(0).uniform(size=(5, 1, 16, 16)).astype(np.float32)
    grid = np.asarray(Image.open(samples_png(images, "t", tmp_path / "grid.png")))
    assert grid.shape == (16 + 2 * 16 + 2, 3 * 16 + 2 * 2)  # title band, 3 x 2 grid, 2-pixel gaps
    np.testing.assert_array_equal(grid[16 + 18 :, 18:34], np.round(images[4, 0] * 255))  # second row, second cell
    assert (grid[16 + 18 :, 34:] == 255).all() and (grid[16:, 16:18] == 255).all()  # the blank cell and a gap: white
    assert (grid[:16] < 255).any()  # the title is drawn
    rows = Traversal(values=np.zeros((2, 3)), z=np.zeros((2, 3, 2)), images=images[:3][None].repeat(2, 0))
    assert [axis.get_ylabel() for axis in traversal_figure(rows).axes] == ["z_00", "z_01"]
    strip = strip_figure(images[:4], "a", "b", title="pair")
    assert [label.get_text() for label in strip.axes[0].get_xticklabels()] == ["a", "", "", "b"]
    assert strip.get_suptitle() == "pair"


def test_most_probable_member_is_the_first_of_the_analysis_ranking(galaxies):
    gamma = galaxies[2]["gamma"]
    ranked = clusters.most_probable_members(gamma, per_component=3)
    assert top_members(gamma) == {c: int(rows[0]) for c, rows in ranked.items() if len(rows)}


# -- CLI and estimator ---------------------------------------------------------------------------
def test_cli_makes_every_product(run, galaxies, tmp_path):
    ids, _, outputs = galaxies
    labels = outputs["gamma"].argmax(1)
    clean = next(c for c in np.unique(labels) if c != labels[0])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "generate", str(run), "--out", str(out), "--n", "100", "--component", "0", "--component", "2",
        "--format", "fits", "--table", "csv", "--tour", "--traversal", "--steps", "4",
        "--deblend", ids[0], "--clean-component", str(clean), "--interpolate", ids[1], ids[2],
    ])
    assert result.exit_code == 0, result.output
    assert "100 synthetic images" in result.output and "tour of" in result.output and "deblend" in result.output
    for name in ("samples.fits", "samples.csv", "tour.png", "tour.npz", "traversal.png", "traversal.npz",
                 "deblend.png", "deblend.npz", "interpolation.png", "interpolation.npz", "generate.json"):
        assert (out / name).exists(), name
    assert matplotlib.image.imread(out / "tour.png").ndim == 3
    manifest = read_json(out / "generate.json")
    assert manifest["samples"]["components"] == [0, 2] and manifest["galaxies"]["split"] == "test"
    assert manifest["tour"]["length"] <= manifest["tour"]["identity_length"] * (1 + 1e-6)
    assert manifest["deblend"]["target"] == ids[0] and manifest["interpolation"]["ids"] == [ids[1], ids[2]]
    with np.load(out / "interpolation.npz") as arrays:
        assert arrays["images"].shape == (4, 1, 16, 16) and list(arrays["ids"]) == [ids[1], ids[2]]
    with np.load(out / "tour.npz") as arrays:
        assert list(arrays["components"]) == manifest["tour"]["components"]
    # A later run adds to the manifest and leaves the other products alone.
    again = CliRunner().invoke(app, ["generate", str(run), "--out", str(out), "--traversal", "--split", "all"])
    assert again.exit_code == 0, again.output
    updated = read_json(out / "generate.json")
    assert updated["samples"] == manifest["samples"] and updated["galaxies"]["split"] == "all"


@pytest.mark.parametrize("arguments, error, message", [
    ([], AstroVaDErError, "nothing to make"),
    (["--deblend", "g0001"], AstroVaDErError, "--deblend ID and --clean-component C go together"),
    (["--n", "5", "--component", "9"], AstroVaDErError, "component 9: the model has components 0..2"),
    (["--interpolate", "nope", "g0001"], InputError, "--interpolate nope: no galaxy with this id"),
    (["--tour", "--split", "nonsense"], InputError, "unknown split 'nonsense'"),
])
def test_cli_errors_name_the_option(run, tmp_path, arguments, error, message):
    result = CliRunner().invoke(app, ["generate", str(run), "--out", str(tmp_path / "out"), *arguments])
    assert isinstance(result.exception, error) and message in str(result.exception)


def test_cli_needs_a_cache_when_the_run_records_none(run, tmp_path):
    bare = tmp_path / "bare"
    model = load_model(run)[0]
    save_model(bare, model, model.config)
    for arguments, message in ((["--tour"], "records no prepared cache"), (["--tour", "--data", str(run)], "not a prepared cache")):
        result = CliRunner().invoke(app, ["generate", str(bare), "--out", str(tmp_path / "out"), *arguments])
        assert isinstance(result.exception, InputError) and message in str(result.exception)


def test_estimator_sample_interpolate_and_traverse_use_generate(run, model, galaxies):
    _, pixels, outputs = galaxies
    estimator = AstroVaDEr.load(run)
    images, components = estimator.sample(20, component=[1], seed=2)
    expected = sample_images(model, 20, [1], seed=2)
    assert np.array_equal(images, expected[0]) and np.array_equal(components, expected[1])
    with pytest.raises(AstroVaDErError, match="component 5"):
        estimator.sample(3, component=5)
    path = estimator.interpolate(pixels[0], pixels[1], steps=4)
    assert np.array_equal(path, interpolate(model, outputs["mu"][0], outputs["mu"][1], 4)[1])
    assert estimator.traverse(pixels, steps=3).shape == (4, 3, 1, 16, 16)
    reconstructions = estimator.reconstruct(pixels)  # the kernel's fixed blocks and clamp, as everywhere
    assert np.array_equal(reconstructions, decode(model, outputs["mu"]))
    assert np.array_equal(estimator.reconstruct(pixels[3:5]), reconstructions[3:5])


def test_report_hook_yields_figures_9_to_11(model, galaxies):
    outputs = galaxies[2]
    figures = list(report_figures(model, outputs["mu"], outputs["gamma"], seed=0))
    assert [name for name, _, _ in figures] == ["synthetic", "tour", "traversal"]
    synthetic = figures[0][1].axes
    assert [axis.get_ylabel() for axis in synthetic] == ["c = 0", "c = 1", "c = 2"]  # one row of 8 per component
    assert all(axis.images[0].get_array().shape == (16, 8 * 16 + 7 * 2) for axis in synthetic)
    assert all(isinstance(caption, str) and caption for _, _, caption in figures)


def test_products_made_before_a_failure_are_described(run, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", str(run), "--out", str(out), "--n", "10", "--interpolate", "nope", "g0001"])
    assert isinstance(result.exception, InputError)
    assert (out / "samples.npy").exists() and read_json(out / "generate.json")["samples"]["n"] == 10
