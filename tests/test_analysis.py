"""Analysis functions on arrays and tables built here: Table 2, overlap, subsets, galleries,
label scores, choosing K, the Galaxy Zoo comparison, figures, and reading predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from astrovader.analysis import clusters, figures, metrics
from astrovader.analysis.choose_k import ChooseK, choose_k, draw_batches, write_choose_k
from astrovader.analysis.galaxy_zoo import VoteSettings, read_votes, vote_classes, vote_counts
from astrovader.analysis.objects import numbered_columns, objects_from_predictions
from astrovader.errors import AstroVaDErError, InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blobs(centres: int = 3, per_centre: int = 40, dims: int = 4, spread: float = 0.3, seed: int = 0):
    """Well-separated Gaussian blobs in `dims` dimensions and their centre index."""
    rng = np.random.default_rng(seed)
    centre_positions = np.eye(centres, dims) * 10
    labels = np.repeat(np.arange(centres), per_centre)
    return centre_positions[labels] + rng.normal(0, spread, (len(labels), dims)), labels


def one_hot_gamma(labels: np.ndarray, count: int, confidence: float = 0.9) -> np.ndarray:
    gamma = np.full((len(labels), count), (1 - confidence) / (count - 1))
    gamma[np.arange(len(labels)), labels] = confidence
    return gamma


# -- Table 2, scores, overlap --------------------------------------------------------------------
def test_component_table_counts_thresholds_and_silhouette():
    mu, labels = blobs()
    gamma = one_hot_gamma(labels, 4)  # component 3 is nobody's top
    gamma[:5] = [0.4, 0.35, 0.2, 0.05]  # five objects of blob 0, uncertain between 0 and 1
    table = clusters.component_table(mu, gamma)
    assert table["objects"].tolist() == [40, 40, 40, 0]
    assert table["gamma > 0.1"].tolist() == [40, 45, 45, 0]
    assert table["gamma > 0.3"].tolist() == [40, 45, 40, 0]
    assert table["gamma > 0.5"].tolist() == [35, 40, 40, 0]
    assert (table["silhouette"].iloc[:3] > 0.9).all()  # tight, far-apart blobs
    assert np.isnan(table.loc[3, "silhouette"])


def test_cluster_scores_separate_good_and_useless_clusterings():
    mu, labels = blobs()
    good = clusters.cluster_scores(mu, labels)
    assert good["components_used"] == 3
    assert good["silhouette"] > 0.9 and good["simplified_silhouette"] > 0.9 and good["calinski_harabasz"] > 1000
    shuffled = clusters.cluster_scores(mu, np.random.default_rng(0).permutation(labels))
    assert shuffled["silhouette"] < 0.1 and shuffled["calinski_harabasz"] < 10
    single = clusters.cluster_scores(mu, np.zeros(len(mu), int))
    assert single["components_used"] == 1 and np.isnan(single["silhouette"]) and single["simplified_silhouette"] == 0


def test_overlap_matrix_is_mean_gamma_per_top_component():
    gamma = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]])
    matrix = clusters.overlap_matrix(gamma)
    np.testing.assert_allclose(matrix.loc[0], [0.6, 0.3, 0.1])
    np.testing.assert_allclose(matrix.loc[1], [0.1, 0.8, 0.1])
    assert matrix.loc[2].isna().all()  # nobody's top component


def test_subset_relabels_by_most_probable_component_within_it():
    gamma = np.array([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8]])
    np.testing.assert_array_equal(clusters.assignments(gamma), [0, 0, 2])
    np.testing.assert_array_equal(clusters.assignments(gamma, [1, 2]), [1, 2, 2])
    assert clusters.parse_subset(" 2, 0 ", 3) == [0, 2]
    assert clusters.parse_subset(None, 3) is None
    for bad in ("0,x", "0,3", "1,1", "-1", ","):
        with pytest.raises(AstroVaDErError, match="--subset"):
            clusters.parse_subset(bad, 3)


def test_gallery_members_random_and_most_probable():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    gamma = one_hot_gamma(labels, 3)
    gamma[:4, 0] = [0.5, 0.9, 0.7, 0.8]
    chosen = clusters.gallery_members(gamma, labels, per_component=3, seed=1)
    assert chosen["most probable"][0].tolist() == [1, 3, 2]
    assert chosen["most probable"][2].tolist() == [6]  # fewer members than asked
    for component, positions in chosen["random"].items():
        assert len(positions) == min(3, (labels == component).sum())
        assert (labels[positions] == component).all() and len(set(positions)) == len(positions)
    again = clusters.gallery_members(gamma, labels, per_component=3, seed=1)
    assert all(np.array_equal(again["random"][c], chosen["random"][c]) for c in range(3))
    only = clusters.gallery_members(gamma, labels, 2, seed=1, components=[1])
    assert list(only["random"]) == [1] and only["most probable"][1].tolist() == [4, 5]
    by_top = clusters.most_probable_members(gamma, per_component=2)  # labels default to the top component
    assert {c: rows.tolist() for c, rows in by_top.items()} == {0: [1, 3], 1: [4, 5], 2: [6]}
    gamma[:, 2] = 0.0
    assert clusters.most_probable_members(gamma)[2].tolist() == []  # nobody's top: empty


def test_latent_map_is_a_seeded_subsample():
    mu, labels = blobs(per_centre=20)
    positions, coordinates, method = clusters.latent_map(mu, seed=3, max_points=30)
    assert len(positions) == 30 and coordinates.shape == (30, 2) and method == "t-SNE"
    again = clusters.latent_map(mu, seed=3, max_points=30)
    np.testing.assert_array_equal(positions, again[0])
    np.testing.assert_allclose(coordinates, again[1])
    with pytest.raises(AstroVaDErError, match="too few"):
        clusters.latent_map(mu[:4])


# -- known classes ---------------------------------------------------------------------------
def test_class_best_components():
    labels = np.array(["edge_on"] * 6 + ["round"] * 6)
    clusters_ = np.array([0, 0, 0, 0, 1, 2, 1, 1, 1, 1, 1, 2])
    table = metrics.class_best_components(labels, clusters_)
    assert table.loc["edge_on", "best_component"] == 0 and table.loc["edge_on", "purity"] == 1.0
    assert table.loc["edge_on", "completeness"] == pytest.approx(4 / 6)
    assert table.loc["round", "best_component"] == 1
    assert table.loc["round", "purity"] == pytest.approx(5 / 6)
    assert table.loc["round", "component_size"] == 6 and table.loc["round", "size"] == 6
    assert table["share"].tolist() == [0.5, 0.5]
    # A one-member component is trivially pure: at min_size 2 it is out of the running.
    labels, clusters_ = np.array(["a", "a", "b", "b", "b"]), np.array([7, 8, 8, 8, 8])
    assert metrics.class_best_components(labels, clusters_).loc["a", "best_component"] == 7
    sized = metrics.class_best_components(labels, clusters_, min_size=2)
    assert sized.loc["a", "best_component"] == 8 and sized.loc["a", "purity"] == 0.25


# -- choosing K --------------------------------------------------------------------------------
def test_choose_k_finds_the_number_of_blobs():
    mu, _ = blobs(centres=4, per_centre=150, dims=6, spread=0.5)
    result = choose_k(mu, fits=4, batch_size=300, max_components=12, threshold=0.02, seed=0)
    assert result.counts.tolist() == [4, 4, 4, 4] and result.recommended == 4
    assert all(np.isclose(weights.sum(), 1) and (np.diff(weights) <= 0).all() for weights in result.weights)
    again = choose_k(mu, fits=4, batch_size=300, max_components=12, threshold=0.02, seed=0)
    np.testing.assert_allclose(np.concatenate(again.weights), np.concatenate(result.weights))
    summary = result.to_dict()
    assert summary["recommended_k"] == 4 and summary["distribution"] == {4: 4} and summary["fits"] == 4


def test_recommended_k_is_the_mode_nearest_the_median():
    def result(counts):
        return ChooseK(np.array(counts), [], np.ones(len(counts), bool), 0.01, 100, 30, 0)

    assert result([3, 3, 5, 5, 4]).recommended == 3  # modes 3 and 5, both 1 from the median: the smaller
    assert result([3, 5, 5, 6, 6]).recommended == 5  # modes 5 and 6, median 5
    assert result([7, 2, 7]).distribution()["fits"].to_dict() == {2: 1, 7: 2}


def test_draw_batches_are_seeded_distinct_and_capped():
    batches = draw_batches(100, fits=3, batch_size=40, seed=5)
    assert [len(batch) for batch in batches] == [40, 40, 40]
    assert all(len(np.unique(batch)) == 40 and batch.max() < 100 for batch in batches)
    assert not np.array_equal(batches[0], batches[1])
    assert all(np.array_equal(a, b) for a, b in zip(batches, draw_batches(100, 3, 40, 5)))
    assert [len(batch) for batch in draw_batches(10, 2, 40, 0)] == [10, 10]


@pytest.mark.parametrize("arguments, message", [
    ({"fits": 0}, "--fits"), ({"max_components": 1}, "--max-components"),
    ({"batch_size": 5, "max_components": 10}, "--batch-size"), ({"threshold": 1.5}, "--threshold"),
])
def test_choose_k_rejects_bad_settings(arguments, message):
    mu, _ = blobs()
    with pytest.raises(AstroVaDErError, match=message):
        choose_k(mu, **{"fits": 2, "batch_size": 50, "max_components": 5, **arguments})


def test_choose_k_needs_more_embeddings_than_components():
    with pytest.raises(AstroVaDErError, match="fewer than"):
        choose_k(np.zeros((8, 2)), fits=1, batch_size=100, max_components=10)


def test_write_choose_k(tmp_path):
    mu, _ = blobs(per_centre=30)
    result = choose_k(mu, fits=2, batch_size=60, max_components=6)
    json_path, png_path = write_choose_k(result, tmp_path / "out")
    assert pd.read_json(json_path, typ="series")["recommended_k"] == result.recommended
    assert png_path.read_bytes().startswith(PNG_MAGIC)


# -- Galaxy Zoo ---------------------------------------------------------------------------------
def vote_table(ids) -> pd.DataFrame:
    """Five objects: smooth; featured edge-on; featured face-on; featured but too few edge-on
    votes; undecided."""
    return pd.DataFrame({
        "dr7objid": ids,
        "t01_smooth_or_features_a01_smooth_debiased": [0.9, 0.1, 0.2, 0.1, 0.5],
        "t01_smooth_or_features_a02_features_or_disk_debiased": [0.1, 0.9, 0.8, 0.9, 0.43],
        "t02_edgeon_a04_yes_debiased": [0.0, 0.8, 0.1, 0.9, 0.0],
        "t02_edgeon_a05_no_debiased": [1.0, 0.2, 0.9, 0.1, 1.0],
        "t01_smooth_or_features_total_votes": [40, 40, 40, 40, 40],
        "t02_edgeon_total_votes": [4, 30, 30, 5, 17],
    })


IDS = [588848901537202306 + i for i in range(5)]


def test_vote_classes_apply_cuts_and_floors(tmp_path):
    votes = read_votes(_written(tmp_path, vote_table(IDS)), VoteSettings())
    classes = vote_classes(votes, VoteSettings())
    assert classes["smooth"].tolist() == [True, False, False, False, True]
    assert classes["featured"].tolist() == [False, True, True, True, False]  # 0.43 is not above 0.43
    assert classes["edge_on"].tolist() == [False, True, False, False, False]  # object 3: 5 votes < 10
    assert classes["not_edge_on"].tolist() == [False, False, True, False, False]  # object 4 is not featured
    looser = vote_classes(votes, VoteSettings(min_edge_on_votes=0, featured_threshold=0.4))
    assert looser["edge_on"].tolist() == [False, True, False, True, False]
    assert looser["not_edge_on"].tolist() == [False, False, True, False, True]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_vote_counts_per_component_from_a_file(tmp_path, suffix):
    path = tmp_path / f"votes{suffix}"
    table = vote_table(IDS)
    if suffix == ".csv":
        table.to_csv(path, index=False)
    elif suffix == ".parquet":
        table.to_parquet(path)
    else:
        from astropy.table import Table

        Table.from_pandas(table).write(path)
    votes = read_votes(path, VoteSettings())  # id column found: dr7objid, 18-digit ids kept exact
    ids = pd.Series([str(i) for i in IDS] + ["not-voted"])
    components = np.array([0, 1, 1, 2, 0, 2])
    counts = vote_counts(ids, components, votes, VoteSettings())
    assert counts.index.tolist() == [0, 1, 2]
    assert counts["objects"].tolist() == [2, 2, 2] and counts["with_votes"].tolist() == [2, 2, 1]
    assert counts["smooth"].tolist() == [2, 0, 0] and counts["featured"].tolist() == [0, 2, 1]
    assert counts["edge_on"].tolist() == [0, 1, 0] and counts["not_edge_on"].tolist() == [0, 1, 0]
    subset = vote_counts(ids, components, votes, VoteSettings(), order=[2, 0, 5])
    assert subset.index.tolist() == [2, 0, 5] and subset.loc[5].sum() == 0


def test_vote_file_errors_name_the_file_and_column(tmp_path):
    path = tmp_path / "votes.csv"
    vote_table(IDS).drop(columns="t02_edgeon_total_votes").to_csv(path, index=False)
    with pytest.raises(InputError, match="votes.csv: no column 't02_edgeon_total_votes' and no answer counts"):
        read_votes(path, VoteSettings())
    vote_table([1, 1, 2, 3, 4]).to_csv(path, index=False)
    with pytest.raises(InputError, match="'1' appears more than once"):
        read_votes(path, VoteSettings())
    vote_table(IDS).rename(columns={"dr7objid": "name"}).to_csv(path, index=False)
    with pytest.raises(InputError, match="no id column"):
        read_votes(path, VoteSettings())
    assert len(read_votes(path, VoteSettings(id_column="name"))) == 5
    with pytest.raises(InputError, match="not found"):
        read_votes(tmp_path / "absent.csv", VoteSettings())


def hart16_counts_table(ids) -> pd.DataFrame:
    """vote_table's objects as the Hart et al. (2016) tables are commonly distributed: per-answer
    counts, weighted fractions and debiased fractions, one overall total_votes, no per-question totals."""
    table = vote_table(ids).drop(columns=["t01_smooth_or_features_total_votes", "t02_edgeon_total_votes"])
    smooth = table["t01_smooth_or_features_a01_smooth_debiased"]
    table["t01_smooth_or_features_a01_smooth_count"] = (smooth * 38).round()
    table["t01_smooth_or_features_a02_features_or_disk_count"] = 38 - table["t01_smooth_or_features_a01_smooth_count"]
    table["t01_smooth_or_features_a03_star_or_artifact_count"] = 2
    edge_on_votes = np.array([4, 30, 30, 5, 17])
    table["t02_edgeon_a04_yes_count"] = (table["t02_edgeon_a04_yes_debiased"] * edge_on_votes).round()
    table["t02_edgeon_a05_no_count"] = edge_on_votes - table["t02_edgeon_a04_yes_count"]
    table["total_votes"] = 90
    return table


def decals_table(ids, suffix="") -> pd.DataFrame:
    """vote_table's objects in GZ DECaLS (Walmsley et al. 2022) / galaxy-datasets column names."""
    gz2 = vote_table(ids)
    columns = {"iauname": [f"J{i}" for i in range(5)]}
    for answer, source in (("smooth-or-featured{s}_smooth", "t01_smooth_or_features_a01_smooth_debiased"),
                           ("smooth-or-featured{s}_featured-or-disk", "t01_smooth_or_features_a02_features_or_disk_debiased"),
                           ("disk-edge-on{s}_yes", "t02_edgeon_a04_yes_debiased"),
                           ("disk-edge-on{s}_no", "t02_edgeon_a05_no_debiased")):
        columns[answer.format(s=suffix) + "_fraction"] = gz2[source]
    columns[f"smooth-or-featured{suffix}_total-votes"] = gz2["t01_smooth_or_features_total_votes"]
    columns[f"disk-edge-on{suffix}_total-votes"] = gz2["t02_edgeon_total_votes"]
    return pd.DataFrame(columns)


@pytest.mark.parametrize("kind", ["hart16-counts", "decals", "galaxy-datasets"])
def test_votes_of_every_schema_give_the_same_classes(tmp_path, kind):
    path = tmp_path / "votes.csv"
    {"hart16-counts": lambda: hart16_counts_table(IDS), "decals": lambda: decals_table(IDS),
     "galaxy-datasets": lambda: decals_table(IDS, "-gz2")}[kind]().to_csv(path, index=False)
    expected = vote_classes(read_votes(_written(tmp_path, vote_table(IDS)), VoteSettings()), VoteSettings())
    for schema in ("auto", "gz2" if kind == "hart16-counts" else "decals"):
        votes = read_votes(path, VoteSettings.from_pairs([], schema))
        if kind == "hart16-counts":  # per-question totals added up from the answers' counts
            assert votes["smooth_votes"].tolist() == [40] * 5 and votes["edge_on_votes"].tolist() == [4, 30, 30, 5, 17]
        assert vote_classes(votes, VoteSettings()).to_numpy().tolist() == expected.to_numpy().tolist()
    wrong = "decals" if kind == "hart16-counts" else "gz2"
    with pytest.raises(InputError, match=f"votes.csv: not a Galaxy Zoo vote table of schema '{wrong}': no column like"):
        read_votes(path, VoteSettings.from_pairs([], wrong))


def _written(folder, table):
    path = folder / "reference.csv"
    table.to_csv(path, index=False)
    return path


def test_a_table_without_galaxy_zoo_columns_says_what_was_looked_for(tmp_path):
    path = tmp_path / "votes.csv"
    pd.DataFrame({"id_str": ["a", "b"], "p_smooth": [0.1, 0.9]}).to_csv(path, index=False)
    with pytest.raises(InputError) as error:
        read_votes(path, VoteSettings())
    message = str(error.value)
    assert "t01_smooth_or_features[suffix]_a01_smooth" in message and "smooth-or-featured[suffix]_smooth" in message
    assert "--votes-schema" in message
    # Naming every column works for any table.
    named = VoteSettings.from_pairs([f"{name}_column=p_smooth" for name in ("smooth", "featured", "edge_on", "not_edge_on",
                                                                             "smooth_votes", "edge_on_votes")])
    assert read_votes(path, named)["smooth"].tolist() == [0.1, 0.9]


def test_vote_settings_from_pairs():
    settings = VoteSettings.from_pairs(["edge_on_threshold=0.8", "id_column = objid", "min_smooth_votes=20"])
    assert settings.edge_on_threshold == 0.8 and settings.id_column == "objid" and settings.min_smooth_votes == 20
    with pytest.raises(AstroVaDErError, match="KEY=VALUE"):
        VoteSettings.from_pairs(["edge_on_threshold"])
    with pytest.raises(AstroVaDErError, match="edge_on_threshold = '2'"):
        VoteSettings.from_pairs(["edge_on_threshold=2"])
    with pytest.raises(AstroVaDErError, match="bogus"):
        VoteSettings.from_pairs(["bogus=1"])


# -- figures ----------------------------------------------------------------------------------------
def metrics_table() -> pd.DataFrame:
    phases = ["alpha"] * 3 + ["anneal", "anneal", "static", "static"]
    rows = []
    for epoch, phase in enumerate(phases):
        mixture = float("nan") if phase == "alpha" else 5.0 - epoch * 0.1
        rows.append({"epoch": epoch, "phase": phase, **{
            f"{stage}_{name}": value + (0.1 if stage == "validation" else 0)
            for stage in ("train", "validation")
            for name, value in (("total", 10 - epoch), ("reconstruction", 8 - epoch), ("kl_normal", 1.0),
                                ("kl_mixture", mixture))
        }})
    return pd.DataFrame(rows)


def test_loss_curves_plot_train_and_validation_with_phases(tmp_path):
    figure = figures.loss_curves(metrics_table())
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title() for axis in panels] == [title for _, title in figures.LOSS_PANELS]
    for axis in panels:
        styles = sorted(line.get_linestyle() for line in axis.lines)
        assert styles == ["-", "--"]
        assert len(axis.patches) == 3  # alpha, anneal, static spans
    mixture = panels[3].lines[0]
    assert np.isnan(mixture.get_ydata()[:3]).all() and np.isfinite(mixture.get_ydata()[3:]).all()
    data = figures.save_figure(figure, tmp_path / "losses.png")
    assert data.startswith(PNG_MAGIC) and (tmp_path / "losses.png").read_bytes() == data
    assert not list(tmp_path.glob(".*.part"))  # atomic write left no temporary file


def test_image_grid_rows_and_residual_scale():
    images = np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
    rows = [figures.ImageRow("input", images), figures.ImageRow("residual", images - 0.5, residual=True),
            figures.ImageRow("short", images[:1])]
    figure = figures.image_grid(rows, ["a", "b", "c"])
    assert [axis.get_ylabel() for axis in figure.axes] == ["input", "residual", "short"]
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == ["a", "b", "c"]
    strips = [axis.images[0].get_array() for axis in figure.axes]
    np.testing.assert_array_equal(strips[0][:, 10:18], images[1, 0])  # second cell, after a 2-pixel gap
    assert np.ma.getmaskarray(strips[2])[:, 8:].all() and not np.ma.getmaskarray(strips[2])[:, :8].any()
    low, high = figure.axes[1].images[0].get_clim()
    assert low == -high and high == pytest.approx(np.abs(images - 0.5).max())
    blank = images.copy()
    blank[1] = np.nan
    titled = figures.image_grid([figures.ImageRow("", blank)], title="a title")
    assert titled.get_suptitle() == "a title"
    assert np.ma.getmaskarray(titled.axes[0].images[0].get_array())[:, 10:18].all()  # an all-NaN image is blank


def test_colour_images_and_colour_residuals():
    colour = np.zeros((2, 3, 4, 5), np.float32)
    colour[:, 0] = 1.0
    strip, centres = figures.image_strip(colour, 3)
    assert strip.shape == (4, 3 * 7 - 2, 4) and centres == [2.0, 9.0]  # RGBA: empty cells transparent
    assert strip[0, 0].tolist() == [1, 0, 0, 1] and strip[0, 5, 3] == 0 and strip[0, 16, 3] == 0
    residual, _ = figures.image_strip(colour - 0.5, 2, gray=True)
    np.testing.assert_allclose(residual[:, :5], (0.5 - 0.5 - 0.5) / 3)  # band mean, never clipped
    assert figures.display_image(np.ones((3, 4, 5)) * 2).max() == 1


def test_vote_histogram_and_overlap_heatmap_render(tmp_path):
    counts = pd.DataFrame({"featured": [3, 0], "smooth": [1, 4]}, index=pd.Index([2, 5], name="component"))
    figure = figures.vote_histogram(counts, "featured", "smooth", {2: np.zeros((1, 8, 8))}, "test")
    assert len(figure.axes) == 2  # the histogram and one example
    assert figures.save_figure(figure, tmp_path / "votes.png").startswith(PNG_MAGIC)
    heatmap = figures.overlap_heatmap(clusters.overlap_matrix(one_hot_gamma(np.array([0, 1, 1]), 3)))
    texts = [text.get_text() for text in heatmap.axes[0].texts]
    assert len(texts) == 6 and "0.90" in texts  # component 2 is nobody's top: no numbers in its column


# -- predictions tables ----------------------------------------------------------------------------
def predictions_table(count: int = 12, components: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    gamma = rng.dirichlet(np.ones(components), count)
    frame = pd.DataFrame({"id_str": [f"g{i}" for i in range(count)], "split": ["test"] * (count - 2) + ["train"] * 2,
                          "component": gamma.argmax(1), "gamma_max": gamma.max(1)})
    for k in range(components):
        frame[f"gamma_{k:02d}"] = gamma[:, k]
        frame[f"posterior_{k:02d}"] = gamma[:, k]
    for j in range(3):
        frame[f"mu_{j:02d}"] = rng.normal(size=count)
        frame[f"logvar_{j:02d}"] = 0.0
    frame["mse"] = rng.uniform(size=count)
    frame["error"] = ""
    frame.loc[0, "error"] = "missing file"
    frame["label_name"] = "x"
    return frame


def test_objects_from_predictions(tmp_path):
    frame = predictions_table()
    path = tmp_path / "predictions.csv"
    frame.sample(frac=1, axis=1, random_state=0).to_csv(path, index=False)  # column order must not matter
    objects = objects_from_predictions(path, "test")
    assert len(objects) == 9 and objects.table["id_str"].tolist() == [f"g{i}" for i in range(1, 10)]
    assert "1 objects of predictions.csv have an error" in objects.notes[0]
    expected = frame.loc[1:9, [f"gamma_{k:02d}" for k in range(11)]].to_numpy()
    np.testing.assert_allclose(objects.gamma, expected, rtol=1e-6)  # gamma_10 after gamma_09
    assert objects.mu.shape == (9, 3) and objects.mse.shape == (9,)
    assert {"label_name", "split", "id_str"} <= set(objects.table.columns)
    assert not any(name.split("_")[-1].isdigit() for name in objects.table.columns)  # per-component columns
    assert "gamma_max" in objects.table.columns
    assert len(objects_from_predictions(path, "all")) == 11
    with pytest.raises(InputError, match="no rows in the 'validation' split"):
        objects_from_predictions(path, "validation")
    frame.drop(columns=[c for c in frame if c.startswith("mu_")]).to_csv(path, index=False)
    with pytest.raises(InputError, match="no mu column"):
        objects_from_predictions(path)


def test_numbered_columns_sort_numerically():
    frame = pd.DataFrame(columns=["gamma_10", "gamma_02", "gamma_max", "mu_00", "gamma_00"])
    assert numbered_columns(frame, "gamma") == ["gamma_00", "gamma_02", "gamma_10"]


# -- truth of the simulation ------------------------------------------------------------------------
def test_components_are_scored_against_each_truth_attribute(tmp_path):
    from astrovader.analysis.truth import attribute_scores, component_means

    rng = np.random.default_rng(0)
    n = 600
    morphology = np.array(["bulge-dominated", "disk face-on", "disk edge-on"])[np.arange(n) % 3]
    truth = pd.DataFrame({
        "id_str": [f"g{i}" for i in range(n)], "morphology": morphology, "has_companion": rng.random(n) < 0.5,
        "snr": rng.lognormal(4, 1, n), "flux_e": rng.lognormal(9, 1, n), "position_angle_deg": rng.uniform(0, 180, n),
        "bulge_to_total": np.where(morphology == "bulge-dominated", 0.8, 0.2), "n_companions": rng.integers(0, 3, n),
    })
    truth.to_parquet(tmp_path / "truth.parquet")
    ids = truth["id_str"].to_numpy()[::-1]  # any order: matched by id
    by_morphology = pd.factorize(truth.set_index("id_str").loc[ids, "morphology"])[0]
    scores = attribute_scores(by_morphology, ids, tmp_path / "truth.parquet")
    assert scores["nmi_morphology"] == 1.0
    for unwanted in ("nmi_has_companion", "nmi_snr", "nmi_flux", "nmi_position_angle"):
        assert scores[unwanted] < 0.02, (unwanted, scores)
    by_snr = (truth.set_index("id_str").loc[ids, "snr"].rank().to_numpy() * 3 // (n + 1)).astype(int)
    assert attribute_scores(by_snr, ids, tmp_path / "truth.parquet")["nmi_snr"] > 0.4  # a defect, measured
    means = component_means(by_morphology, ids, tmp_path / "truth.parquet")
    assert means["objects"].tolist() == [200, 200, 200]
    assert sorted(means["bulge-dominated"].tolist()) == [0.0, 0.0, 1.0]
    assert sorted(means["bulge_to_total"].round(3).tolist()) == [0.2, 0.2, 0.8]
    with pytest.raises(InputError, match="no truth for 1 object"):
        attribute_scores(by_morphology, np.append(ids[:-1], "stranger"), tmp_path / "truth.parquet")


def test_linear_information_finds_what_features_encode_and_nothing_else(tmp_path):
    from astrovader.analysis.truth import LINEAR, linear_information

    rng = np.random.default_rng(1)
    n = 800
    truth = pd.DataFrame({
        "id_str": [f"g{i}" for i in range(n)], "snr": rng.lognormal(4, 1, n), "flux_e": rng.lognormal(9, 1, n),
        "bulge_to_total": rng.random(n), "disk_axis_ratio": rng.uniform(0.1, 1, n),
        "disk_hlr_arcsec": rng.lognormal(0, 0.5, n), "has_companion": rng.random(n) < 0.3,
    })
    truth.to_parquet(tmp_path / "truth.parquet")
    # Features that carry log S/N and B/T (plus noise dimensions), nothing of the rest.
    features = np.column_stack([np.log(truth["snr"]), truth["bulge_to_total"], rng.normal(size=(n, 3))])
    ids = truth["id_str"].to_numpy()
    scores = linear_information(features[:600], ids[:600], features[600:], ids[600:], tmp_path / "truth.parquet")
    assert set(scores) == {f"r2_{column}" for column in LINEAR}
    assert scores["r2_snr"] > 0.99 and scores["r2_bulge_to_total"] > 0.99
    for absent in ("r2_flux_e", "r2_disk_axis_ratio", "r2_disk_hlr_arcsec", "r2_has_companion"):
        assert scores[absent] < 0.05, (absent, scores)


def test_majority_capture_measures_how_components_gather_one_class():
    from astrovader.analysis.metrics import majority_capture

    # Components 0 and 1: edge-on majorities (9/10 and 6/10); component 2: mostly others.
    labels = np.array(["edge"] * 9 + ["other"] + ["edge"] * 6 + ["other"] * 4 + ["edge"] * 5 + ["other"] * 15)
    clusters = np.array([0] * 10 + [1] * 10 + [2] * 20)
    scores = majority_capture(labels, clusters, "edge", min_purity=0.9)
    assert scores["completeness"] == pytest.approx(15 / 20)
    assert scores["majority_purity"] == pytest.approx(15 / 20)
    assert scores["pure_completeness"] == pytest.approx(9 / 20)  # component 0 alone is >= 90 % pure
    assert majority_capture(labels, clusters, "edge", min_purity=0.75)["pure_completeness"] == pytest.approx(15 / 20)
    assert majority_capture(labels, clusters, "edge", min_purity=0.95)["pure_completeness"] == 0.0
    with pytest.raises(ValueError, match="'spiral' not among"):
        majority_capture(labels, clusters, "spiral")
