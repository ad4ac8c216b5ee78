"""benchmarks.run: per-run JSON records, the Markdown tables, resume, option checks; on the blob
catalogue with the tiny preset (ClustPy and the long throughput scripts are never run here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from astrovader.config import Config
from benchmarks import clustpy_runner, run, throughput
from benchmarks.clustering import datasets, methods, records, tables
from benchmarks.clustering.datasets import Pixels
from benchmarks.common import machine, machine_description, result_name
from benchmarks.train_throughput import measure

REPOSITORY = Path(__file__).resolve().parents[1]
TINY_YAML = "preset: tiny\ndata:\n  crop_fraction: 1.0\n  scaling: fixed\n  fixed_max: 1.0\n  orientation: none\n  workers: 1\n"  # as tiny_config


def benchmark(results: Path, *arguments: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, ASTROVADER_BENCHMARK_RESULTS=str(results), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", *arguments], cwd=REPOSITORY,
                          env=environment, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_run(blob_catalogue, tmp_path_factory):
    """One quick run on the blobs: 2 seeds of vade-conv, two-stage and k-means on PCA."""
    folder = tmp_path_factory.mktemp("benchmarks")
    (folder / "tiny.yaml").write_text(TINY_YAML)
    arguments = ("--seeds", "2", "--labelled", str(blob_catalogue), "--label-column", "label",
                 "--labelled-config", str(folder / "tiny.yaml"))
    done = benchmark(folder / "results", *arguments, "--only", "labelled", "vade-conv", "two-stage", "kmeans-pca")
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "results", arguments


def saved_records(results: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (results / "quick" / "clustering").glob("*.json")}


def test_quick_run_writes_one_record_per_dataset_method_and_seed(quick_run, blob_catalogue):
    results, _ = quick_run
    dataset = f"labelled-{blob_catalogue.parent.name}"
    found = saved_records(results)
    assert sorted(found) == sorted(f"{dataset}-{method}-seed{seed}" for method in ("vade-conv", "two-stage", "kmeans-pca")
                                   for seed in (0, 1))
    for record in found.values():
        assert record["budget"] == "quick" and record["classes"] == 3 and record["image_size"] == 16
        assert record["train_images"] == 400 and record["test_images"] == 50  # 500 rows: 80 / 10 / 10 %
        assert set(record["scores"]) == {"accuracy", "nmi", "ari", "purity"}
        assert 1 / 3 <= record["scores"]["accuracy"] <= 1 and 0 <= record["scores"]["nmi"] <= 1
        assert 0 < record["time_to_final"]["seconds"] <= record["train_seconds"] <= record["wall_seconds"]
        assert record["config"]["model"]["n_components"] == 3
        assert 1 / 3 <= record["largest_class_share"] < 1
        assert record["machine"]["threads"] == 1
    # A quick run keeps apart from a full run's records and table: it never overwrites them.
    assert not list((results / "clustering").glob("*.json")) and not (results / "clustering.md").exists()
    # k-means on PCA of the pixels separates the blob shapes: well above chance (1/3).
    assert found[f"{dataset}-kmeans-pca-seed0"]["scores"]["accuracy"] > 0.6


def test_curves_score_every_epoch_with_a_prior_and_end_at_the_final_accuracy(quick_run, blob_catalogue):
    results, _ = quick_run
    found = saved_records(results)
    dataset = f"labelled-{blob_catalogue.parent.name}"
    vade = found[f"{dataset}-vade-conv-seed0"]
    # Quick schedule: 2 alpha epochs (no mixture yet, nothing to score), then 1 annealing epoch.
    assert [point["epoch"] for point in vade["curve"]] == [2] and vade["epochs"] == 3
    assert vade["curve"][-1]["accuracy"] == vade["scores"]["accuracy"]  # the callback scored the final model
    assert len(vade["epoch_seconds"]) == 3 and sum(vade["epoch_seconds"]) <= vade["train_seconds"]
    two_stage = found[f"{dataset}-two-stage-seed0"]
    assert [point["epoch"] for point in two_stage["curve"]] == [2]  # the mixture exists only at the end
    assert two_stage["config"]["train"]["method"] == "two_stage"
    assert found[f"{dataset}-kmeans-pca-seed0"]["curve"] == []


def test_markdown_table_has_median_and_range_over_seeds(quick_run, blob_catalogue):
    results, _ = quick_run
    table = (results / "quick" / "clustering.md").read_text()
    assert f"## labelled-{blob_catalogue.parent.name}" in table and "400 training / 50 test images (0 inputs rejected by prepare), K = 3." in table
    share = saved_records(results)[f"labelled-{blob_catalogue.parent.name}-vade-conv-seed0"]["largest_class_share"]
    assert f"The largest class holds {share:.1%} of the test images" in table
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    for method in ("vade-conv", "two-stage", "kmeans-pca"):
        cells = [cell.strip() for cell in rows[method].strip("|").split("|")]
        assert cells[1] == "0, 1" and cells[2] == "16 px"
        accuracies = [run["scores"]["accuracy"] * 100 for name, run in saved_records(results).items() if f"-{method}-" in name]
        assert cells[4] == tables.spread(accuracies, "{:.1f}")
    assert "Estimated full clustering run" in table
    # The table names the machine its runs were measured on (tables can be built over sittings).
    record = saved_records(results)[f"labelled-{blob_catalogue.parent.name}-kmeans-pca-seed0"]
    assert f"- {machine_description(record['machine'])}: 6 run(s)" in table
    assert machine()["cpu"] in table and "Several machines" not in table


def test_machines_section_counts_runs_per_machine_and_warns_when_they_mix():
    amd = {"cpu": "AMD EPYC", "threads": 2, "cpu_capability": "AVX512", "native_bf16": True, "allocator": "tcmalloc",
           "torch": "2.13.0+cpu"}
    section = tables.machines_section([{"machine": amd}, {"machine": amd}, {"machine": {**amd, "cpu": "Xeon"}}])
    assert section[2] == "- AMD EPYC, 2 thread(s), AVX512, native bf16, allocator tcmalloc, torch 2.13.0+cpu: 2 run(s)"
    assert section[3].startswith("- Xeon, 2 thread(s)") and section[3].endswith(": 1 run(s)")
    assert "Several machines" in section[4]
    assert "Several machines" not in "\n".join(tables.machines_section([{"machine": amd}]))
    assert tables.machines_section([]) == []


def test_a_second_run_reuses_the_records(quick_run, monkeypatch, capsys):
    results, arguments = quick_run
    for module in (datasets, records, run):
        monkeypatch.setattr(module, "RESULTS", results)
    before = {path.name: path.stat().st_mtime_ns for path in (results / "quick" / "clustering").glob("*.json")}
    assert run.main(["--quick", *arguments, "--only", "labelled", "kmeans-pca"]) == 0
    assert capsys.readouterr().out.count("reused") == 2
    assert {path.name: path.stat().st_mtime_ns for path in (results / "quick" / "clustering").glob("*.json")} == before
    assert "| vade-conv |" in (results / "quick" / "clustering.md").read_text()  # the table keeps earlier runs


def test_largest_class_share_is_the_accuracy_of_one_cluster():
    from astrovader.analysis.metrics import hungarian_accuracy

    labels = np.array([0] * 7 + [1] * 2 + [2])
    assert records.largest_class_share(labels) == 0.7 == hungarian_accuracy(labels, np.zeros(10, dtype=int))


def test_time_to_final_is_the_first_epoch_within_a_point():
    curve = [{"epoch": 3, "seconds": 10.0, "accuracy": 0.50}, {"epoch": 4, "seconds": 20.0, "accuracy": 0.695},
             {"epoch": 5, "seconds": 30.0, "accuracy": 0.68}, {"epoch": 6, "seconds": 40.0, "accuracy": 0.70}]
    assert methods.time_to_final(curve, 0.70, 41.0) == {"epoch": 4, "seconds": 20.0}
    assert methods.time_to_final([], 0.70, 41.0) == {"epoch": None, "seconds": 41.0}


def test_full_run_estimate_scales_steady_epochs_and_keeps_fixed_costs():
    # 3 s outside the epochs; epochs after the first take 2 s for 100 images.
    ours = {"epoch_seconds": [5.0, 2.0, 2.0], "train_images": 100, "wall_seconds": 12.0, "train_seconds": 9.5,
            "work": 300, "full_work": 10_000}
    assert tables.full_run_seconds(ours) == pytest.approx(3.0 + 0.02 * 10_000)
    # Without epoch timings: the training time scales, the rest (e.g. a subprocess start) does not.
    theirs = {"epoch_seconds": [], "train_images": 100, "wall_seconds": 10.0, "train_seconds": 3.0,
              "work": 300, "full_work": 3_000}
    assert tables.full_run_seconds(theirs) == pytest.approx(7.0 + 30.0)


def test_bad_options_and_catalogues_fail_with_one_line(blob_catalogue, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.parse(["--only", "imagenet"])
    assert exit_info.value.code == 2 and "--only imagenet: unknown" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.parse(["--labelled", str(blob_catalogue)])
    assert "--labelled and --label-column go together" in capsys.readouterr().err
    status = run.main(["--labelled", str(blob_catalogue), "--label-column", "morphology", "--only", "labelled"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.count("\n") == 0
    assert str(blob_catalogue) in error and "no label column 'morphology'" in error


def test_clustpy_is_skipped_with_a_note_when_its_environment_cannot_be_made(monkeypatch):
    def refuse(echo=print):
        raise clustpy_runner.ClustPyError("pip install failed (no network)")

    monkeypatch.setattr(clustpy_runner, "ensure_venv", refuse)
    notes: list[str] = []
    chosen = run.chosen_methods(run.parse(["--clustpy"]), notes)
    assert chosen == ["vade-conv", "vade-mlp", "two-stage", "two-stage-mlp", "kmeans-pca", "pca-gmm", "pca-gmm-full", "pca-gmm-aperture"]
    assert notes == ["ClustPy skipped: pip install failed (no network)"]
    assert run.chosen_methods(run.parse([]), []) == chosen  # without --clustpy: not even tried


def test_throughput_table_from_a_real_measurement_and_a_failed_script(tmp_path, monkeypatch):
    monkeypatch.setattr(throughput, "RESULTS", tmp_path)
    peak = {"fp32": 50.0, "bf16": 5.0}
    step = measure("tiny", 16, "fp32", peak, seconds=0.2)
    outcomes = {"train": {"seconds": 1.0, "error": None, "result": {
        "peak_gflops": peak, "default_precision": "fp32", "machine": machine(),
        "runs": [{"path": "default", **step}]}}}
    outcomes |= throughput.run_scripts(["missing"], quick=True, echo=lambda line: None)
    table = throughput.throughput_table(outcomes, quick=True)
    assert "fp32 50.0 GFLOP/s, bf16 5.0 GFLOP/s" in table and "run 10x slower than fp32" in table
    assert "the default path IS the naive fp32 NCHW" in table
    assert f"Machine: {machine()['cpu']}, " in table
    expected = (f"| training step | tiny | 16 px | default (fp32) | {step['images_per_second']} | "
                f"{step['gflop_per_image']} | {step['fraction_of_peak']:.1%} |")
    assert expected in table and step["images_per_second"] > 0
    assert "| missing_throughput |" in table and "exit status 1; see" in table
    assert outcomes["missing"]["result"] is None and (tmp_path / "quick" / "logs" / "missing_throughput.log").exists()
    # A quick run's table and records stay apart from a full run's: it never overwrites them.
    assert throughput.write_table(outcomes, quick=True) == tmp_path / "quick" / "throughput.md"
    assert throughput.write_table(outcomes, quick=False) == tmp_path / "throughput.md"
    assert [result_name("train_throughput", quick) for quick in (True, False)] == ["quick/train_throughput", "train_throughput"]


def test_a_failed_run_is_listed_and_the_status_is_one(tmp_path, monkeypatch, capsys):
    for module in (datasets, records, run):
        monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    catalogue = tmp_path / "catalog.csv"
    catalogue.write_text("id_str,file_loc,label\n" + "".join(f"g{i},missing/g{i}.png,{i % 2}\n" for i in range(4)))
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    status = run.main(["--quick", "--seeds", "1", "--labelled", str(catalogue), "--label-column", "label",
                       "--labelled-config", str(tmp_path / "tiny.yaml"), "--only", "labelled", "kmeans-pca"])
    assert status == 1 and "FAILED" in capsys.readouterr().out
    table = (tmp_path / "results" / "quick" / "clustering.md").read_text()
    failures = table.split("## Failed runs")[1].strip().splitlines()
    assert failures == [f"- labelled-{tmp_path.name} kmeans-pca seed 0: InputError: {catalogue}: none of its 4 selected "
                        f"inputs could be read (reasons: {next((tmp_path / 'results').rglob('rejects.csv'))})"]
    assert not list((tmp_path / "results").rglob("*-seed0.json"))  # nothing recorded: retried next time


def test_each_two_stage_baseline_shares_its_vade_network(tmp_path):
    """The baselines differ from VaDE only in training: same backbone, method two_stage."""
    dataset = datasets.Dataset("d", tmp_path / "c.csv", "label", Config.from_preset("tiny"),
                                 mlp_config=Config.from_preset("tiny", model={"backbone": "mlp"}))
    for vade, baseline in (("vade-conv", "two-stage"), ("vade-mlp", "two-stage-mlp")):
        ours, theirs = dataset.method_config(vade), dataset.method_config(baseline)
        assert (ours.train.method, theirs.train.method) == ("vade", "two_stage")
        assert theirs.model == ours.model and theirs.data == ours.data
    assert dataset.method_config("two-stage-mlp").model.backbone == "mlp"


def test_gz1_criteria_and_their_table(tmp_path):
    import pandas as pd

    catalogue = tmp_path / "catalog.csv"
    names = ["elliptical", "spiral_cw", "edge_on"]
    pd.DataFrame({"id_str": ["a", "b", "c"], "file_loc": ["a.png", "b.png", "c.png"], "gz1_class": [0, 1, 3],
                  "gz1_class_name": names}).to_csv(catalogue, index=False)
    gz1 = datasets.Dataset("gz1", catalogue, "gz1_class", Config.from_preset("tiny"))
    # Component 0: 19 ellipticals + 1 edge-on (95 % pure); component 1: 6 edge-on + 4 ellipticals.
    labels = np.array([0] * 19 + [3] + [3] * 6 + [0] * 4)
    clusters = np.array([0] * 20 + [1] * 10)
    found = records.gz1_capture(gz1, labels, clusters)
    assert found == {"edge_on_in_edge_on_components": round(6 / 7, 4), "ellipticals_at_90_percent_purity": round(19 / 23, 4)}
    runs = {"vade-conv": [{"criteria": found}, {"criteria": {key: 0.0 for key in found}}], "kmeans-pca": [{}]}
    table = tables.criteria_table(runs)
    assert table[0] == "| Method | edge on in edge on components | ellipticals at 90 percent purity |"
    assert table[2] == "| vade-conv | 0.429 [0.000, 0.857] | 0.413 [0.000, 0.826] |"
    assert len(table) == 4  # kmeans-pca has no criteria: no row
    assert tables.criteria_table({"vade-conv": [{"criteria": {}}]}) == []


def test_the_peak_is_measured_once_per_machine_and_shared(tmp_path, monkeypatch, capsys):
    from benchmarks import common, peak

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(peak, "RESULTS", tmp_path)
    monkeypatch.setattr(peak, "REPEATS", 2)
    measured = peak.measure_precision("fp32", seconds=0.05)
    assert measured["kernel"] in measured["kernels"] and measured["gflops"] == max(measured["kernels"].values())
    assert 0 <= measured["spread"] and measured["attempts"] >= 1 and measured["stable"] == (measured["spread"] <= 0.05)
    calls = []
    monkeypatch.setattr(peak, "measure_precision", lambda precision, seconds: calls.append(precision) or {
        "gflops": {"fp32": 100.0, "bf16": 300.0}[precision], "kernel": "k", "spread": 0.01, "attempts": 1, "stable": True})
    assert peak.machine_peak(quick=True) == {"fp32": 100.0, "bf16": 300.0} and len(calls) == 2
    assert peak.machine_peak(quick=True) == {"fp32": 100.0, "bf16": 300.0} and len(calls) == 2  # the record is shared
    peak.machine_peak(quick=False)  # a quick record never serves a full run
    assert len(calls) == 4 and not json.loads((tmp_path / "peak.json").read_text())["quick"]
    record = json.loads((tmp_path / "peak.json").read_text())
    record["machine"]["threads"] = -1  # another machine's (or thread count's) record is measured again
    (tmp_path / "peak.json").write_text(json.dumps(record))
    peak.machine_peak(quick=False)
    assert len(calls) == 6
    assert peak.fraction(50.0, 100.0) == 0.5 and "warning" not in capsys.readouterr().out
    assert peak.fraction(120.0, 100.0) == 1.2 and "misses a faster kernel" in capsys.readouterr().out


def test_truth_mixtures_score_clusterings_of_the_true_parameters(tmp_path):
    """benchmarks.ceiling --truth: classes cut cleanly through well separated parameters are found
    by a mixture on them, and a nuisance that spreads wider than the classes drags it down."""
    import pandas as pd

    from benchmarks.ceiling import truth_mixtures

    rng = np.random.default_rng(0)
    labels = np.arange(600) % 3
    truth = pd.DataFrame({
        "id_str": [f"g{i}" for i in range(600)], "bulge_to_total": np.array([0.1, 0.5, 0.9])[labels] + rng.normal(0, 0.03, 600),
        "inclination_deg": np.full(600, 45.0), "n_companions": np.zeros(600),
        "disk_hlr_arcsec": rng.uniform(1, 50, 600), "bulge_hlr_arcsec": rng.uniform(1, 50, 600),
        "snr": np.exp(rng.uniform(3, 9, 600)), "flux_e": np.exp(rng.uniform(8, 14, 600)),
    })
    truth.to_parquet(tmp_path / "truth.parquet")
    ids = truth["id_str"].to_numpy()
    scores = truth_mixtures(tmp_path / "truth.parquet", ids[:400], ids[400:], labels[400:], 3, seed=0)
    assert set(scores) == {f"{name}_{covariance}" for name in ("class_parameters", "with_nuisances")
                           for covariance in ("diag", "full")}
    assert scores["class_parameters_diag"] > 0.95 and scores["with_nuisances_diag"] < scores["class_parameters_diag"]


def test_ranked_capture_takes_the_most_likely_members_while_the_set_stays_pure():
    """benchmarks.ceiling's bound on the ellipticals' criterion: ranked by score, the longest
    prefix at >= min_purity, as a share of the class."""
    from benchmarks.ceiling import ranked_capture

    is_class = np.array([1, 1, 1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    score = np.arange(10, 0, -1)  # already in rank order
    # prefixes' purity: 1, 1, 1, 0.75, 0.8, 0.83, 0.71, ...; the last at >= 0.8 holds 5 of 6
    assert ranked_capture(is_class, score, 0.8) == 5 / 6
    assert ranked_capture(is_class, score, 1.0) == 3 / 6
    assert ranked_capture(is_class, -score, 0.9) == 0.0  # the least likely first: never pure
    assert ranked_capture(is_class, score, 0.6) == 1.0


def test_aperture_baseline_sees_the_centre_where_a_bright_edge_misleads_plain_pca_gmm(tmp_path):
    # Two classes that differ only in a faint central blob; a bright random corner source in
    # half the images of either class dominates the plain pixels' variance.
    rng = np.random.default_rng(0)
    count, side = 400, 32
    labels = rng.integers(0, 2, count)
    images = rng.normal(20.0, 3.0, (count, 1, side, side))
    images[labels == 1, :, 13:19, 13:19] += 30.0
    corner = rng.integers(0, 2, count).astype(bool)
    images[corner, :, :8, :8] += 200.0
    pixels = Pixels(tmp_path, images[:300].clip(0, 255).astype(np.uint8), images[300:].clip(0, 255).astype(np.uint8),
                    labels[300:], 300, 0)
    nmi = {method: normalized_mutual_info_score(
        labels[300:], methods.run_pixel_baseline(method, pixels, 2, seed=0, aperture=0.15)["clusters"])
        for method in ("pca-gmm", "pca-gmm-aperture")}
    assert nmi["pca-gmm"] < 0.2 and nmi["pca-gmm-aperture"] > 0.8, nmi
