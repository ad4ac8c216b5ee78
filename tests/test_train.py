"""Training runs on the tiny preset: outputs, determinism, exact resume after kill -9, NaN safety."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from astrovader.cli import app
from astrovader.atomic import read_json
from astrovader.errors import AstroVaDErError, InputError, TrainingError
from astrovader.estimator import AstroVaDEr
from astrovader.train.run import train_run


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def tiny_run(blob_cache, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    train_run(out, tiny_config, blob_cache, progress=False)
    return out


def test_run_writes_config_metrics_checkpoint_and_model(tiny_run, tiny_config):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.yaml", "run.json", "metrics.csv", "model.safetensors", "model.json", "checkpoints/last.ckpt"):
        assert (tiny_run / name).exists(), name
        assert (tiny_run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # safetensors files too
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    assert list(metrics["epoch"]) == list(range(tiny_config.train.total_epochs))
    assert list(metrics["phase"]) == ["autoencoder", "autoencoder", "anneal", "static", "anneal", "static"]
    for stage in ("train", "validation"):
        assert np.isfinite(metrics[f"{stage}_reconstruction"]).all()
        assert metrics[f"{stage}_kl_mixture"].iloc[:2].isna().all()  # no mixture before its initialisation
        assert np.isfinite(metrics[f"{stage}_kl_mixture"].iloc[2:]).all()
    assert metrics["train_reconstruction"].iloc[-1] < metrics["train_reconstruction"].iloc[0]
    model = AstroVaDEr.load(tiny_run)
    assert model.metadata_["label_names"] == ["round", "along_x", "along_y"]
    assert model.metadata_["parameters"]["total"] == sum(t.numel() for n, t in weights(tiny_run).items() if n.split(".")[-1] not in ("initialised", "noise_sigma"))  # buffers
    assert np.isclose(model.weights_.sum(), 1) and model.means_.shape == (3, 4) and (model.covariances_ > 0).all()


def test_same_seed_same_model(tiny_run, blob_cache, tiny_config, tmp_path):
    again = train_run(tmp_path / "again", tiny_config, blob_cache, progress=False)
    assert_same_weights(weights(tiny_run), weights(again))
    other = train_run(tmp_path / "other", tiny_config.with_overrides({"train.seed": 1}), blob_cache, progress=False)
    assert not torch.equal(weights(tiny_run)["encoder.mu.weight"], weights(other)["encoder.mu.weight"])


def test_the_cpu_layout_is_chosen_recorded_and_applied(tiny_run, blob_cache, tiny_config, tmp_path):
    from astrovader.hardware import default_threads, training_layout

    train = tiny_config.train
    assert training_layout(train, cores=8) == (1, 8)  # the measured rule: one process, every core
    assert training_layout(train.model_copy(update={"devices": 2}), cores=8) == (2, 4)
    assert training_layout(train.model_copy(update={"threads": 3}), cores=8) == (1, 3)
    assert read_json(tiny_run / "run.json")["layout"] == {"processes": 1, "threads_per_process": default_threads()}
    before = torch.get_num_threads()
    try:
        out = train_run(tmp_path / "one", tiny_config.with_overrides({"train.threads": 1}), blob_cache, progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    info = read_json(out / "run.json")
    assert info["layout"] == {"processes": 1, "threads_per_process": 1} and info["runtime"]["threads"] == 1
    with pytest.raises(AstroVaDErError, match="threads = 0"):
        tiny_config.with_overrides({"train.threads": 0})


def test_em_prior_update_leaves_the_prior_to_em_and_ends_on_a_fit_to_the_training_embeddings(blob_cache, tiny_config, tmp_path):
    from astrovader.train.module import TrainingData, VaDETraining

    config = tiny_config.with_overrides({"model.covariance": "full", "train.prior_update": "em"})
    module = VaDETraining(config, TrainingData(np.zeros((1, 1, 16, 16)), np.arange(1), np.arange(1)))
    trained = {id(parameter) for group in module.configure_optimizers().param_groups for parameter in group["params"]}
    assert not any(id(parameter) in trained for parameter in module.model.prior.parameters())
    assert all(id(parameter) in trained for parameter in module.model.encoder.parameters())

    assert_prior_is_an_em_fit(train_run(tmp_path / "em", config, blob_cache, progress=False), blob_cache)


def test_a_umap_start_gives_the_prior_the_parts_of_the_embeddings_manifold(blob_cache, tiny_config, tmp_path):
    from astrovader.data.cache import Cache
    from astrovader.data.loader import read_rows
    from astrovader.train.gmm import fit_gmm, manifold_mixture

    # The two-stage method fits its mixture once, at the end: the saved prior is that start.
    config = tiny_config.with_overrides({"train.method": "two_stage", "train.gmm_init": "umap"})
    model = AstroVaDEr.load(train_run(tmp_path / "umap", config, blob_cache, progress=False))
    cache = Cache(blob_cache)
    embeddings = model.transform(read_rows(cache.images, cache.split("train")["row"].to_numpy()))
    weights, means, covariances = manifold_mixture(embeddings, 3, seed=0, covariance="diag")
    order = np.argsort(means[:, 0])
    saved = np.argsort(model.means_[:, 0])
    scale = embeddings.std(0).max()
    assert np.abs(model.means_[saved] - means[order]).max() < 1e-3 * scale
    assert np.allclose(model.weights_[saved], weights[order], atol=1e-4)
    assert np.allclose(model.covariances_[saved], covariances[order], rtol=1e-3, atol=1e-6 * scale**2)
    # ... and not the mixture the default start fits to the same embeddings.
    direct = fit_gmm(embeddings, 3, seed=0)
    assert np.abs(np.sort(direct.means_[:, 0]) - means[order, 0]).max() > 1e-2 * scale


def test_the_module_refuses_to_train_without_the_s3vdc_callbacks(tiny_config, tmp_path):
    import lightning as L

    from astrovader.train.callbacks import S3VDCSchedule
    from astrovader.train.module import TrainingData, VaDETraining

    module = VaDETraining(tiny_config, TrainingData(np.zeros((4, 1, 16, 16), np.uint8), np.arange(2), np.arange(2, 4)))
    trainer = L.Trainer(max_epochs=1, callbacks=[S3VDCSchedule()], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    with pytest.raises(TrainingError, match="missing: MiniBatchGMMInit"):
        trainer.fit(module)


def test_final_refit_trains_the_prior_by_gradient_and_ends_on_an_em_fit(blob_cache, tiny_config, tmp_path):
    from astrovader.train.module import TrainingData, VaDETraining

    config = tiny_config.with_overrides({"model.covariance": "full", "train.final_refit": True})
    module = VaDETraining(config, TrainingData(np.zeros((1, 1, 16, 16)), np.arange(1), np.arange(1)))
    trained = {id(parameter) for group in module.configure_optimizers().param_groups for parameter in group["params"]}
    assert all(id(parameter) in trained for parameter in module.model.prior.parameters())
    assert_prior_is_an_em_fit(train_run(tmp_path / "refit", config, blob_cache, progress=False), blob_cache)


def assert_prior_is_an_em_fit(run, blob_cache):
    from astrovader.data.cache import Cache
    from astrovader.data.loader import read_rows
    from astrovader.train.gmm import fit_gmm

    model = AstroVaDEr.load(run)
    assert model.covariances_.shape == (3, 4, 4) and np.all(np.linalg.eigvalsh(model.covariances_) > 0)
    cache = Cache(blob_cache)
    embeddings = model.transform(read_rows(cache.images, cache.split("train")["row"].to_numpy()))
    # The saved prior is EM's fit to the final training embeddings: one more EM run barely moves
    # its means, and cannot raise its likelihood by more than EM's stopping tolerance allows (the
    # weights of components on a flat ridge can drift by a few hundredths at that likelihood).
    again = fit_gmm(embeddings, 3, seed=0, covariance="full", start=(model.weights_, model.means_, model.covariances_))
    scale = embeddings.std(0).max()
    assert np.abs(again.means_ - model.means_).max() < 0.05 * scale
    saved = mixture_log_likelihood(embeddings, model.weights_, model.means_, model.covariances_)
    assert again.score(embeddings) - saved < 0.01


def mixture_log_likelihood(points, weights, means, covariances) -> float:
    """Mean log-density of `points` under a full-covariance Gaussian mixture."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    densities = [np.log(weight) + multivariate_normal(mean, covariance).logpdf(points)
                 for weight, mean, covariance in zip(weights, means, covariances)]
    return float(logsumexp(np.stack(densities, axis=1), axis=1).mean())


def test_survey_noise_is_measured_on_the_training_rows_and_saved(blob_cache, tiny_config, tmp_path):
    from astrovader.data.cache import Cache
    from astrovader.model.losses import survey_noise

    config = tiny_config.with_overrides({"model.noise": "survey", "train.periods": 0})
    run = train_run(tmp_path / "survey", config, blob_cache, progress=False)
    cache = Cache(blob_cache)
    expected = survey_noise(cache.images, cache.split("train")["row"].to_numpy())
    assert weights(run)["noise_sigma"].item() == pytest.approx(expected) and expected > 0


def test_the_pca_encoder_is_held_while_the_decoder_pretrains_and_trained_with_the_mixture(blob_cache, tiny_config, tmp_path):
    from astrovader.data.cache import Cache
    from astrovader.model.vade import VaDE

    config = tiny_config.with_overrides({"model.encoder": "pca"})
    cache = Cache(blob_cache)
    started = VaDE(config)
    started.start_encoder(cache.images, cache.split("train")["row"].to_numpy())
    start = started.encoder.state_dict()
    pretrained = weights(train_run(tmp_path / "pretrained", config.with_overrides({"train.periods": 0}), blob_cache,
                                   progress=False))
    assert torch.equal(pretrained["encoder.mu.weight"], start["mu.weight"])
    assert torch.equal(pretrained["encoder.mu.bias"], start["mu.bias"])
    assert not torch.equal(pretrained["decoder.body.0.weight"], started.state_dict()["decoder.body.0.weight"])
    joint = weights(train_run(tmp_path / "joint", config, blob_cache, progress=False))
    assert not torch.equal(joint["encoder.mu.weight"], start["mu.weight"])


def test_a_checkpoint_written_before_the_noise_sigma_buffer_resumes(blob_cache, tiny_config, tmp_path):
    from astrovader.train.checkpoint import load_safe, save_safe

    config = tiny_config.with_overrides({"train.alpha_epochs": 1, "train.periods": 0})
    run = train_run(tmp_path / "old", config, blob_cache, progress=False)
    finished = weights(run)
    checkpoint = load_safe(run / "checkpoints" / "last.ckpt")
    del checkpoint["state_dict"]["model.noise_sigma"]
    save_safe(checkpoint, run / "checkpoints" / "last.ckpt")
    train_run(run, resume=True, progress=False)
    assert_same_weights(weights(run), finished)


def test_refuses_to_overwrite_a_run(tiny_run, blob_cache, tiny_config):
    with pytest.raises(InputError, match="--resume"):
        train_run(tiny_run, tiny_config, blob_cache, progress=False)


def _cli(*arguments):
    environment = dict(os.environ, OMP_NUM_THREADS="2", ASTROVADER_ALLOCATOR="system")
    return [sys.executable, "-m", "astrovader", *arguments], environment


def test_resume_after_kill_9_matches_an_uninterrupted_run(blob_cache, tiny_config, tmp_path):
    config = tiny_config.with_overrides({"train.alpha_epochs": 3, "train.anneal_epochs": 3, "train.static_epochs": 2})
    config_file = tmp_path / "config.yaml"
    config.to_yaml(config_file)
    command, environment = _cli("train", str(blob_cache), "--config", str(config_file), "--out", str(tmp_path / "whole"))
    subprocess.run(command, env=environment, check=True, capture_output=True)

    command, environment = _cli("train", str(blob_cache), "--config", str(config_file), "--out", str(tmp_path / "killed"))
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.csv"
    deadline = time.time() + 120
    # Kill in the middle of the first annealing period (after epoch 3 has been written).
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and len(pd.read_csv(metrics)) >= 5:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    from astrovader.train.checkpoint import load_safe

    assert load_safe(tmp_path / "killed" / "checkpoints" / "last.ckpt")["epoch"] >= 3  # resumes, not restarts

    command, environment = _cli("train", "--resume", str(tmp_path / "killed"))
    subprocess.run(command, env=environment, check=True, capture_output=True)
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "killed"))
    resumed = pd.read_csv(metrics)
    assert list(resumed["epoch"]) == list(range(config.train.total_epochs))  # no duplicated epochs
    pd.testing.assert_frame_equal(resumed, pd.read_csv(tmp_path / "whole" / "metrics.csv"))


def test_blank_constant_saturated_images_and_too_many_components_stay_finite(tiny_config, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(240, 1, 16, 16)).astype(np.float32) * 0.2
    images[:60] = 0.0  # blank
    images[60:120] = 0.5  # constant
    images[120:180] = 1.0  # saturated
    config = tiny_config.with_overrides({"model.n_components": 8})
    model = AstroVaDEr(config).fit(images, out=tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert np.isfinite(metrics.filter(like="train_").drop(columns=["train_kl_mixture"]).to_numpy()).all()
    assert np.isfinite(metrics["train_kl_mixture"].iloc[2:]).all()
    probabilities = model.predict_proba(images)
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tiny_config, tmp_path, monkeypatch):
    from astrovader.model import vade

    original = vade.reconstruction_loss

    calls = []

    def poisoned(*args):
        calls.append(1)
        # Two epochs of 5 training + 1 validation batches run clean, then the loss turns NaN.
        return original(*args) * (float("nan") if len(calls) > 12 else 1.0)

    monkeypatch.setattr(vade, "reconstruction_loss", poisoned)
    images = np.random.default_rng(0).uniform(0, 1, size=(200, 1, 16, 16)).astype(np.float32)
    with pytest.raises(TrainingError, match="non-finite loss at epoch"):
        train_run(tmp_path / "run", tiny_config, images, progress=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint.exists()
    from astrovader.train.checkpoint import load_safe

    state = load_safe(checkpoint)["state_dict"]
    assert all(torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point())


def test_cli_train_and_two_stage_baseline(blob_cache, tmp_path):
    result = CliRunner().invoke(app, ["train", str(blob_cache), "--preset", "tiny", "--method", "two_stage",
                                      "--out", str(tmp_path / "baseline")])
    assert result.exit_code == 0, result.output
    model = AstroVaDEr.load(tmp_path / "baseline")
    assert model.config.train.method == "two_stage"
    assert bool(model.model_.prior.initialised)  # the GMM was fitted after the autoencoder
    metrics = pd.read_csv(tmp_path / "baseline" / "metrics.csv")
    assert set(metrics["phase"]) == {"autoencoder"}


def test_cli_train_reports_on_global_rank_0_only(tmp_path, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    import astrovader.train.run as run

    for rank, reports in ((0, 1), (1, 0)):  # the rank Lightning's strategy sets in each process
        monkeypatch.setattr(run, "train_run", lambda out, *args, **kwargs: out)
        monkeypatch.setattr(rank_zero_only, "rank", rank)
        result = CliRunner().invoke(app, ["train", "--preset", "tiny", "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert result.output.count("model written to") == reports


def test_cli_train_needs_exactly_one_of_out_and_resume(tmp_path):
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code != 0 and "exactly one of --out" in str(result.exception)


def test_a_step_adds_the_l2_penalty_with_its_phase_weight_and_skips_it_at_weight_0():
    from astrovader.config import Config
    from astrovader.model.losses import l2_penalty
    from astrovader.model.vade import VaDE
    from astrovader.train.module import step_loss
    from astrovader.train.schedule import Phase

    torch.manual_seed(0)
    model = VaDE(Config.from_preset("tiny"))
    x = torch.rand(8, 1, 16, 16)
    without, terms = step_loss(model, x, torch.Generator().manual_seed(0), Phase("alpha", 0, 0.5, 0.0, 1e-3, 0.0))
    with_l2, _ = step_loss(model, x, torch.Generator().manual_seed(0), Phase("alpha", 0, 0.5, 0.0, 1e-3, 0.01))
    squares = sum(float(p.square().sum()) for network in (model.encoder, model.decoder)
                  for name, p in network.named_parameters())  # every parameter is a conv or linear one
    assert float(l2_penalty([model.encoder, model.decoder])) == pytest.approx(squares, rel=1e-5)
    assert float(with_l2 - without) == pytest.approx(0.01 * squares, rel=1e-4)
    assert float(without) == pytest.approx(float(terms["reconstruction"] + 0.5 * terms["kl_normal"]), rel=1e-6)
    assert "kl_mixture" not in terms  # no mixture before the prior is initialised
