"""The main job end to end on a small simulated sky: simulate -> prepare -> train -> predict ->
report, scored against the simulation's truth, and resumable by re-running the command."""

import json

import pandas as pd
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.data.sources.simulate import simulate


def test_run_simulated_galaxies_end_to_end_and_rerun_is_cheap(tmp_path, tiny_config):
    simulate(n=240, size=21, out=tmp_path / "sky", seed=0, workers=1)
    config = tmp_path / "tiny.yaml"
    tiny_config.to_yaml(config)
    command = ["run", str(tmp_path / "sky" / "catalog.csv"), "--config", str(config), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    for name in ("model.safetensors", "metrics.csv", "predictions/_manifest.json", "report/report.html", "pipeline.json"):
        assert (run / name).exists(), name
    predictions = pd.concat(pd.read_parquet(part) for part in sorted((run / "predictions").glob("part-*.parquet")))
    assert len(predictions) == 240 and set(predictions["label_name"]) >= {"bulge-dominated", "disk face-on"}
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert "label_name" in json.dumps(summary)  # the clusters are scored against the truth classes
    html = (run / "report" / "report.html").read_text()
    assert "NMI" in html and "disk edge-on" in html
    # Against the simulation's truth, attribute by attribute, and the inputs against the training split.
    assert "Against the simulation&#x27;s truth" in html or "Against the simulation's truth" in html
    assert set(summary["truth_scores"]) >= {"nmi_morphology", "nmi_has_companion", "nmi_snr", "nmi_position_angle"}
    means = pd.DataFrame(summary["truth_component_means"])
    assert means["objects"].sum() == len(predictions.query("split == 'test'"))
    assert {"bulge_to_total", "disk_axis_ratio", "snr", "with companion"} <= set(means.columns)
    assert summary["input_shift"]["flagged"] < 0.2  # the test split is like the training split

    trained = (run / "model.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert (run / "model.safetensors").stat().st_mtime_ns == trained  # a finished model is not retrained
