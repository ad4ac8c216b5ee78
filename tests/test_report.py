"""The report and choose-k commands on a tiny trained model: every section, both input paths
(cache split and predictions table), the Galaxy Zoo comparison, the HTML rendered in headless
Chromium, and one-line errors for bad options."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.errors import AstroVaDErError
from astrovader.report import ReportOptions, build_report

SECTIONS = ("Training losses", "Reconstructions", "Secondary sources in the reconstructions", "Clusters", "Components (Figs. 6-7)", "Components 0, 2 only",
            "Known classes: label_name", "Choosing K", "Generation (Figs. 9-11)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_config, blob_cache):
    from astrovader.train.run import train_run

    return train_run(tmp_path_factory.mktemp("report-run") / "run", tiny_config, blob_cache, progress=False)


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = build_report(run_dir, out, ReportOptions(subset="0,2", choose_k_fits=2, examples=4))
    return summary, out


def test_report_has_every_section_figure_and_table(report, run_dir, blob_cache):
    from astrovader.data.cache import Cache

    summary, out = report
    page = (out / "report.html").read_text()
    for title in SECTIONS:
        assert f">{html.escape(title)}" in page, title
    pngs = sorted(out.glob("*.png"))
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert summary.figures == len(pngs) == len(images) >= 14
    assert sorted(f"{name}.png" for name in images) == [path.name for path in pngs]
    for name in ("fig02_losses", "fig03_reconstructions", "fig04_best_worst", "fig05_overlap", "latent_map",
                 "fig06-07_random_reconstructions", "fig06-07_most_probable_inputs", "fig08_random_inputs", "choose_k",
                 "generation_synthetic", "generation_traversal"):
        assert (out / f"{name}.png").exists(), name
    assert "src=\"http" not in page and "<script" not in page  # self-contained, nothing to fetch
    assert summary.objects == len(Cache(blob_cache).split("test"))
    total = json.loads((run_dir / "model.json").read_text())["parameters"]["total"]
    assert f"<dt>parameters</dt><dd>{total:,}</dd>" in page and "<dt>preset</dt><dd>tiny</dd>" in page


def test_report_summary_numbers(report, run_dir):
    from astrovader.model.io import load_model

    summary, out = report
    saved = json.loads((out / "summary.json").read_text())
    components = pd.DataFrame(saved["components"])
    assert components["objects"].sum() == summary.objects
    assert components["component"].tolist() == list(range(load_model(run_dir)[0].prior.n_components))
    overlap = np.array(saved["overlap"], dtype=float)
    used = components["objects"].to_numpy() > 0
    np.testing.assert_allclose(overlap[used].sum(axis=1), 1, atol=1e-5)  # mean gammas of a row sum to 1
    scores = saved["label_scores"]
    assert scores["column"] == "label_name" and 1 / 3 <= scores["accuracy"] <= 1 and 0 <= scores["nmi"] <= 1
    classes = {row["class"] for row in saved["class_best_components"]}
    assert classes == {"round", "along_x", "along_y"} == set(saved["class_component"])
    assert sum(sum(row.values()) for row in saved["class_component"].values()) == summary.objects
    assert saved["choose_k"]["fits"] == 2 and saved["headline"]["recommended K"] == saved["choose_k"]["recommended_k"]
    assert saved["headline"]["mean mse"] > 0 and np.isfinite(saved["headline"]["final validation loss"])
    sources = saved["secondary_sources"]
    assert sources["images"] == summary.objects and sources["sources"] == sum(row["sources"] for row in sources["by_height"][:-1])


def test_report_renders_in_headless_chromium(report, tmp_path):
    summary, out = report
    checked = render_check(out / "report.html", tmp_path)
    assert checked["images"] == summary.figures
    assert checked["loaded"] == checked["images"], checked
    assert checked["errors"] == []


def test_render_check_catches_a_broken_image(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><img src='data:image/png;base64,AAAA'>"
                      "<script>console.error('boom')</script></body></html>")
    checked = render_check(broken, tmp_path)
    assert checked["images"] == 1 and checked["loaded"] == 0
    assert "boom" in " ".join(checked["errors"])


CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', event => window.__errors.push(
  event.message || ('failed to load ' + (event.target && event.target.tagName))), true);
const consoleError = console.error;
console.error = (...parts) => { window.__errors.push(parts.join(' ')); consoleError(...parts); };
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const loaded = images.filter(image => image.complete && image.naturalWidth > 0).length;
  const pre = document.createElement('pre');
  pre.id = 'render-check';
  pre.textContent = JSON.stringify({images: images.length, loaded: loaded, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def render_check(page, tmp_path) -> dict:
    """Load `page` in headless Chromium with a checker script injected first in <head>:
    images present and decoded, script errors and console.error calls."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    text = page.read_text()
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(re.sub(r"(<head[^>]*>|<html[^>]*>)", lambda m: m.group(1) + CHECK_SCRIPT, text, count=1))
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    found = re.search(r'<pre id="render-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no check output from chromium: {result.stderr[-2000:]}"
    report = json.loads(html.unescape(found.group(1)))
    # Console messages Chromium logs itself (uncaught errors, failed loads), beside the script's own.
    report["errors"] += [line for line in result.stderr.splitlines() if "CONSOLE" in line and "error" in line.lower()]
    return report


def test_known_classes_keep_integer_labels_beside_missing_ones(tmp_path):
    from astrovader.analysis.objects import Objects
    from astrovader.report.context import Context
    from astrovader.report.page import Page
    from astrovader.report.sections import known_classes

    table = pd.DataFrame({"id_str": list("abcdef"), "label": pd.array([0, 1, None, 1, 0, None], dtype="Int64")})
    gamma = np.eye(2)[[1, 0, 0, 0, 1, 1]]
    objects = Objects(table, np.zeros((6, 2)), gamma, None, "predictions")
    context = Context(None, objects, None, ReportOptions(), Page(tmp_path), None, "label", None)
    known_classes(context)
    assert context.tables["class_component"] == {"0": {0: 0, 1: 2}, "1": {0: 2, 1: 0}}  # not "0.0" and "1.0"
    assert context.tables["label_scores"]["accuracy"] == 1.0
    assert "2 objects have no label" in "".join(context.page.sections[0][1])


# -- predictions + votes, through the CLI --------------------------------------------------------
def write_votes(ids, path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Votes for all but the last three ids: every other one featured, every third featured one
    edge-on, the rest smooth; in the column names of `kind`: hart16 (debiased fractions and
    per-question totals), hart16-counts (debiased fractions and per-answer counts only, as the
    tables are commonly distributed) or decals (GZ DECaLS). Returns (featured, edge_on)."""
    ids = list(ids)[:-3]
    featured = np.arange(len(ids)) % 2 == 0
    edge_on = featured & (np.arange(len(ids)) % 3 == 0)
    fractions = {"smooth": np.where(featured, 0.1, 0.9), "featured": np.where(featured, 0.9, 0.1),
                 "yes": np.where(edge_on, 0.9, 0.1), "no": np.where(edge_on, 0.1, 0.9)}
    if kind == "decals":
        votes = pd.DataFrame({"iauname": ids, **{f"smooth-or-featured_{a}_fraction": fractions[b] for a, b in (
            ("smooth", "smooth"), ("featured-or-disk", "featured"))}, **{f"disk-edge-on_{a}_fraction": fractions[a] for a in ("yes", "no")},
            "smooth-or-featured_total-votes": 40, "disk-edge-on_total-votes": 20})
    else:
        votes = pd.DataFrame({
            "dr7objid": ids,
            "t01_smooth_or_features_a01_smooth_debiased": fractions["smooth"],
            "t01_smooth_or_features_a02_features_or_disk_debiased": fractions["featured"],
            "t02_edgeon_a04_yes_debiased": fractions["yes"],
            "t02_edgeon_a05_no_debiased": fractions["no"],
        })
        if kind == "hart16":
            votes["t01_smooth_or_features_total_votes"], votes["t02_edgeon_total_votes"] = 40, 20
        else:
            for question, answers, total in (("t01_smooth_or_features", ("a01_smooth", "a02_features_or_disk", "a03_star_or_artifact"), 40),
                                             ("t02_edgeon", ("a04_yes", "a05_no"), 20)):
                for answer in answers:
                    votes[f"{question}_{answer}_count"] = total // len(answers) + (answer == answers[0]) * (total % len(answers))
            votes["total_votes"] = 60
    votes.to_csv(path, index=False)
    return featured, edge_on


@pytest.mark.parametrize("kind", ["hart16", "hart16-counts", "decals"])
def test_cli_report_from_predictions_with_votes(run_dir, blob_cache, report, tmp_path, kind):
    from astrovader.predict import predict_catalogue, read_predictions

    predict_catalogue(run_dir, blob_cache, tmp_path / "predictions", workers=0)  # every split, Parquet parts
    predictions = read_predictions(tmp_path / "predictions").query("split == 'test'")
    featured, edge_on = write_votes(predictions["id_str"], tmp_path / "votes.csv", kind)
    out = tmp_path / "report"
    schema = ["--votes-schema", "decals"] if kind == "decals" else []  # the others: auto
    result = CliRunner().invoke(app, [
        "report", str(run_dir), "--out", str(out), "--predictions", str(tmp_path / "predictions"),
        "--votes", str(tmp_path / "votes.csv"), *schema, "--labels", "label", "--subset", "0,2", "--choose-k-fits", "0",
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)
    page = (out / "report.html").read_text()
    assert "Galaxy Zoo votes" in page and "Known classes: label<" in page and "Choosing K" not in page
    saved = json.loads((out / "summary.json").read_text())
    counts = pd.DataFrame(saved["galaxy_zoo"])
    assert counts["component"].tolist() == [0, 2]  # the subset, in order
    assert counts["objects"].sum() == len(predictions) and counts["with_votes"].sum() == len(featured)
    assert counts["featured"].sum() == featured.sum() and counts["smooth"].sum() == (~featured).sum()
    assert counts["edge_on"].sum() == edge_on.sum()
    assert counts["edge_on"].sum() + counts["not_edge_on"].sum() == featured.sum()
    for name in ("fig13_smooth_featured", "fig14_edge_on"):
        assert (out / f"{name}.png").exists()
    # Both input paths analyse the same objects the same way.
    from_cache = json.loads((report[1] / "summary.json").read_text())
    pd.testing.assert_frame_equal(pd.DataFrame(saved["components"]), pd.DataFrame(from_cache["components"]),
                                  check_exact=False, atol=1e-6)


def test_cli_choose_k(run_dir, tmp_path):
    out = tmp_path / "choose"
    arguments = ["choose-k", str(run_dir), "--fits", "3", "--batch-size", "100", "--max-components", "8", "--out", str(out)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = json.loads((out / "choose_k.json").read_text())
    assert saved["fits"] == 3 and saved["batch_size"] == 100 and len(saved["counts"]) == 3
    assert all(1 <= count <= 8 for count in saved["counts"])
    assert (out / "choose_k.png").read_bytes().startswith(b"\x89PNG")
    assert "fits" in result.stdout and f"recommended K = {saved['recommended_k']}" in result.output


@pytest.mark.parametrize("arguments, message", [
    (["report", "{run}", "--out", "{tmp}/r", "--subset", "7"], "--subset '7'"),
    (["report", "{run}", "--out", "{tmp}/r", "--labels", "colour"], "--labels 'colour': no such column"),
    (["report", "{run}", "--out", "{tmp}/r", "--votes", "{tmp}/none.csv"], "none.csv: vote catalogue not found"),
    (["report", "{run}", "--out", "{tmp}/r", "--vote-option", "edge_on_threshold"], "expected KEY=VALUE"),
    (["report", "{run}", "--out", "{tmp}/r", "--data", "{tmp}"], "not a prepared cache"),
    (["report", "{tmp}", "--out", "{tmp}/r"], "no trained model"),
    (["choose-k", "{run}", "--batch-size", "5"], "--batch-size 5: must be at least --max-components"),
])
def test_cli_errors_are_one_line(run_dir, tmp_path, arguments, message):
    filled = [argument.format(run=run_dir, tmp=tmp_path) for argument in arguments]
    result = CliRunner().invoke(app, filled)
    assert result.exit_code != 0
    assert isinstance(result.exception, AstroVaDErError) and message in str(result.exception)
    assert "\n" not in str(result.exception)
    assert not (tmp_path / "r" / "report.html").exists()


def test_run_cache_and_image_source(run_dir, blob_cache, blob_catalogue, tiny_config, tmp_path):
    from astrovader.analysis.objects import ImageSource
    from astrovader.runs import RunFolder
    from astrovader.data.cache import Cache, prepare
    from astrovader.data.loader import read_rows

    run = RunFolder(run_dir).open()
    assert run.cache().folder == Cache(blob_cache).folder  # the one recorded in run.json
    assert run.cache(blob_cache).folder == Cache(blob_cache).folder
    bigger = tmp_path / "cache-24px"
    prepare(blob_catalogue, bigger, tiny_config.data.model_copy(update={"image_size": 24}))
    with pytest.raises(AstroVaDErError, match="holds 24 px gray images but the config wants 16 px"):
        run.cache(bigger)
    # Pixels by id: from the cache, else decoded from file_loc with the model's preprocessing.
    index = Cache(blob_cache).index.head(5)
    expected = read_rows(Cache(blob_cache).images, index["row"].to_numpy()) / 255.0
    catalogue = pd.read_csv(blob_catalogue).head(5)
    catalogue["file_loc"] = [str(blob_catalogue.parent / path) for path in catalogue["file_loc"]]
    from_cache = ImageSource(index, Cache(blob_cache), run.config.data).pixels(np.arange(5))
    from_files = ImageSource(catalogue, None, run.config.data).pixels(np.arange(5))
    np.testing.assert_allclose(from_cache, expected, atol=1e-7)
    np.testing.assert_allclose(from_files, expected, atol=1e-7)
    assert ImageSource(catalogue.drop(columns="file_loc"), None, run.config.data).pixels(np.arange(2)) is None
