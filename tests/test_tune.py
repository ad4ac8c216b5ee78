"""Hyper-parameter search on the tiny preset: the search space, trial folders and summary,
resuming a study from its SQLite storage, pruning, and the four objectives."""

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution
from sklearn.metrics import normalized_mutual_info_score
from typer.testing import CliRunner

from astrovader.analysis.metrics import simplified_silhouette
from astrovader.atomic import read_json
from astrovader.cli import app
from astrovader.config import Config
from astrovader.data.cache import Cache
from astrovader.data.catalogue import label_column
from astrovader.errors import InputError
from astrovader.model.inference import model_outputs
from astrovader.model.io import load_model
from astrovader.train.tune import base_params, config_for, search_space, tune


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_search_space_is_centred_on_the_base_config(preset):
    base = Config.from_preset(preset)
    space, params = search_space(base), base_params(base)
    assert space.keys() == params.keys()
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            assert params[name] in distribution.choices, name
        else:
            assert distribution.low <= params[name] <= distribution.high, name
            assert distribution.low < distribution.high or name == "static_epochs", name
    assert config_for(base, params) == base  # the first trial of a study is the base config itself
    wider = config_for(base, {"filter_scale": 2.0, "kernels": "5-5-5", "latent_dim": space["latent_dim"].high})
    assert wider.model.filters == tuple(2 * count for count in base.model.filters)
    assert wider.model.kernels == (5, 5, 5) and wider.model.decoder_kernels is None  # the decoder mirrors them
    assert wider.model.latent_dim == 2 * base.model.latent_dim


def test_cli_search_writes_trials_and_summary_and_resumes_from_its_storage(blob_cache, tiny_config, tmp_path):
    out = tmp_path / "search"
    config_file = tmp_path / "tiny.yaml"
    tiny_config.to_yaml(config_file)
    arguments = ["tune", str(blob_cache), "--config", str(config_file), "--out", str(out)]
    result = CliRunner().invoke(app, [*arguments, "--trials", "2"])
    assert result.exit_code == 0, result.output
    first = pd.read_csv(out / "trials.csv")
    assert list(first["state"]) == ["COMPLETE", "COMPLETE"]

    result = CliRunner().invoke(app, [*arguments, "--trials", "3"])  # resumes: one more trial
    assert result.exit_code == 0, result.output
    trials = pd.read_csv(out / "trials.csv")
    assert list(trials["number"]) == [0, 1, 2] and (trials["state"] == "COMPLETE").all()
    pd.testing.assert_frame_equal(trials.iloc[:2], first)  # the first two were not run again
    study = optuna.load_study(study_name="astrovader", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 3 and study.direction == optuna.study.StudyDirection.MINIMIZE

    for trial in study.trials:  # each trial trained its own config into its own folder
        folder = out / f"trial-{trial.number:04d}"
        expected = config_for(tiny_config, trial.params).with_overrides({"train.devices": 1})
        assert Config.from_yaml(folder / "config.yaml") == expected
        metrics = pd.read_csv(folder / "metrics.csv").iloc[-1]
        # elbo: mean validation reconstruction + mixture KL of the last epoch
        assert trial.value == pytest.approx(metrics["validation_reconstruction"] + metrics["validation_kl_mixture"])
    assert study.trials[0].params == base_params(tiny_config)
    summary = read_json(out / "summary.json")
    assert summary["objective"] == "elbo" and summary["trials"]["complete"] == 3
    assert summary["best_value"] == min(trial.value for trial in study.trials)
    assert Config.from_yaml(out / "best-config.yaml") == config_for(tiny_config, summary["best_params"])

    result = CliRunner().invoke(app, [*arguments, "--trials", "4", "--objective", "reconstruction"])
    assert isinstance(result.exception, InputError) and "another objective" in str(result.exception)


def test_a_clearly_worse_trial_is_pruned(blob_cache, tiny_config, tmp_path):
    # Trial 0 is the base config; trial 1 the same with a learning rate ten times smaller.
    slow = {**base_params(tiny_config), "learning_rate": tiny_config.train.learning_rate / 10}
    summary = tune(blob_cache, tmp_path, tiny_config, trials=2, objective="reconstruction",
                   pruner=optuna.pruners.MedianPruner(n_startup_trials=1), enqueue=[slow])
    assert summary.counts["complete"] == 1 and summary.counts["pruned"] == 1
    study = optuna.load_study(study_name="astrovader", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    pruned = study.trials[1]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    epoch = max(pruned.intermediate_values)
    assert pruned.intermediate_values[epoch] > study.trials[0].intermediate_values[epoch]
    folder = tmp_path / "trial-0001"
    assert len(pd.read_csv(folder / "metrics.csv")) == epoch + 1 < tiny_config.train.total_epochs  # stopped early
    assert not (folder / "model.safetensors").exists()
    assert summary.best_trial == "trial-0000"


@pytest.mark.parametrize("objective", ["silhouette", "nmi"])
def test_clustering_objectives_score_the_final_model_on_the_validation_split(
    objective, blob_cache, tiny_config, tmp_path
):
    summary = tune(blob_cache, tmp_path, tiny_config, trials=1, objective=objective)
    study = optuna.load_study(study_name="astrovader", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    # Reported once the mixture exists (from the GMM initialisation before epoch 2), every epoch.
    assert sorted(study.trials[0].intermediate_values) == list(range(2, tiny_config.train.total_epochs))
    model, _ = load_model(tmp_path / "trial-0000")
    cache = Cache(blob_cache)
    validation = cache.split("validation")
    outputs = model_outputs(model, cache.images[validation["row"].to_numpy()], reconstruct=False)
    clusters = outputs["gamma"].argmax(axis=1)
    expected = (
        simplified_silhouette(outputs["mu"], clusters).mean() if objective == "silhouette"
        else normalized_mutual_info_score(validation["label"], clusters)
    )
    assert summary.best_value == pytest.approx(expected, abs=1e-6)
    assert study.trials[0].intermediate_values[tiny_config.train.total_epochs - 1] == pytest.approx(expected, abs=1e-6)


def test_bad_options_are_one_line_errors(blob_cache, tiny_config, tmp_path):
    # One list of label columns for tuning and the report: names first, then codes, empty ones skipped.
    assert label_column(pd.DataFrame({"id_str": ["a"], "gz1_class_name": ["spiral"]})) == "gz1_class_name"
    assert label_column(pd.DataFrame({"label_name": [None, None], "gz1_class": [1, 2]})) == "gz1_class"
    assert label_column(pd.DataFrame({"id_str": ["a"]})) is None
    with pytest.raises(InputError, match="--objective purity: unknown objective"):
        tune(blob_cache, tmp_path, tiny_config, trials=1, objective="purity")
    with pytest.raises(InputError, match="--trials 0"):
        tune(blob_cache, tmp_path, tiny_config, trials=0)
    with pytest.raises(InputError, match="two-stage baseline"):
        tune(blob_cache, tmp_path, tiny_config.with_overrides({"train.method": "two_stage"}), objective="elbo")
    with pytest.raises(InputError, match="--storage"):
        tune(blob_cache, tmp_path, tiny_config, trials=1, storage="nosuchdb://nowhere")
    assert not list(tmp_path.glob("trial-*"))  # nothing trained


def test_the_nmi_objective_without_labels_is_a_one_line_error(tmp_path):
    import pandas as pd

    from astrovader.train.tune import Scorer

    class Unlabelled:  # the part of a Cache the scorer reads: an index with a validation split, no labels
        folder = tmp_path / "cache"
        index = pd.DataFrame({"id_str": ["a", "b"], "row": [0, 1], "split": ["validation", "train"],
                              "label": [None, None]})

        def split(self, name):
            return self.index[self.index["split"] == name]

    with pytest.raises(InputError, match=r"cache: --objective nmi needs labels, but the cache index has no label"):
        Scorer("nmi", Unlabelled())
