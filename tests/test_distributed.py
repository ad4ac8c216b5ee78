"""Data-parallel training with two CPU processes (gloo), launched by Lightning (--devices 2) and
by torchrun: agreement with one process at the same global batch, the same prior on every rank,
uneven shares of the training split, and resume after kill -9 of the launcher and its children.

Why exact equality with one process is (not) expected: each rank takes every second row of the
epoch's shuffled order, so with the per-rank batch = global batch / 2 the two ranks' batches
together are exactly the one-process batch, and DDP averages their gradients. What differs is
the reparameterisation noise (one stream per rank: `seed_for(seed, epoch, rank)`), the random
flips (drawn per rank and batch) and the order of floating-point sums. With no noise and no
flips (the two-stage autoencoder, augmentation off) the runs agree to float rounding (observed
~1e-8 relative; asserted 1e-5); with the VaDE noise they agree to ~3.4 % with the mixture KL
at weight 1, the default (~0.5 % at 1/256: the prior's pull follows the noise; asserted 5 %).
"""

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

from astrovader.atomic import read_json
from astrovader.data.cache import prepare
from astrovader.train.checkpoint import load_safe
from astrovader.train.run import train_run

# The CLI with one extra callback that writes a checksum of each rank's prior after training
# (Lightning's launcher re-runs this script for rank 1, so every rank gets the callback).
# Commands separated by "+" run in turn in the same processes: under torchrun the process group
# outlives one Trainer, and every process start costs ~7 s of imports on this machine.
DRIVER = '''
import hashlib, itertools, sys
from pathlib import Path
from lightning.pytorch.callbacks import Callback
import astrovader.train.run as run


class PriorChecksum(Callback):
    def on_train_end(self, trainer, module):
        digest = hashlib.sha256()
        for name, tensor in sorted(module.model.prior.state_dict().items()):
            digest.update(name.encode() + tensor.cpu().numpy().tobytes())
        Path(trainer.default_root_dir, f"prior-rank{trainer.global_rank}.sha256").write_text(digest.hexdigest())


original = run.train_run
run.train_run = lambda *args, **kwargs: original(*args, callbacks=[PriorChecksum()], **kwargs)
from astrovader.cli import app
for plus, arguments in itertools.groupby(sys.argv[1:], lambda argument: argument == "+"):
    if not plus:
        app(list(arguments), standalone_mode=False)
'''


def environment():
    # One thread per process on two cores; no allocator re-exec (it would drop the driver).
    return dict(os.environ, OMP_NUM_THREADS="1", ASTROVADER_ALLOCATOR="system")


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def network_difference(a, b) -> float:
    """Largest relative difference (in norm) over the encoder and decoder tensors."""
    network = [name for name in a if a[name].is_floating_point() and not name.startswith("prior")]
    return max(float((a[name] - b[name]).norm() / a[name].norm()) for name in network)


def sorted_mixture_weights(state) -> np.ndarray:
    # Component order is arbitrary between fits: compare the sorted mixture weights.
    return np.sort(torch.softmax(state["prior.logits"], 0).numpy())


def assert_same_prior_on_every_rank(run_dir, world_size=2):
    checksums = {(run_dir / f"prior-rank{rank}.sha256").read_text() for rank in range(world_size)}
    assert len(checksums) == 1, "ranks hold different priors"


def assert_trained_by(run_dir, world_size):
    run = read_json(run_dir / "run.json")
    assert run["status"] == "complete"
    assert run["distributed"] == {"world_size": world_size, "num_nodes": 1, "backend": "gloo"}


def per_rank(config, world_size=2):
    """The same global batch split over `world_size` processes."""
    return config.with_overrides({
        "train.batch_size": config.train.batch_size // world_size, "train.devices": world_size,
        "train.accelerator": "cpu",
    })


@pytest.fixture(scope="module")
def uneven_cache(blob_catalogue, tiny_config, tmp_path_factory):
    """481 training rows: the two ranks' shares differ by one row."""
    out = tmp_path_factory.mktemp("uneven") / "cache"
    prepare(blob_catalogue, out, tiny_config.data.model_copy(update={"train_fraction": 0.8031}))
    assert (pd.read_parquet(out / "index.parquet")["split"] == "train").sum() == 481
    return out


# Rounding differences grow with the step size: the agreement below holds at the paper's
# learning-rate schedule and a global batch of 32, not at the tiny preset's faster settings.
GENTLE = {"train.learning_rate": 3e-4, "train.final_learning_rate": 1e-6, "train.batch_size": 32}


@pytest.fixture(scope="module")
def vade_config(tiny_config):
    return tiny_config.with_overrides({**GENTLE, "train.periods": 3})  # 8 epochs; the mixture is fitted before epoch 2


@pytest.fixture(scope="module")
def two_stage_config(tiny_config):
    # No noise and no flips: one and two processes then do the same arithmetic up to rounding.
    return tiny_config.with_overrides({**GENTLE, "train.method": "two_stage", "data.augment": "none"})


@pytest.fixture(scope="module")
def two_process_runs(blob_cache, uneven_cache, vade_config, two_stage_config, tmp_path_factory):
    """A VaDE run started by Lightning's launcher (--devices 2) and killed with its child after
    the mixture initialisation; then one torchrun launch that resumes it and trains the two-stage
    baseline. Returns the run folders and the killed run's checkpoint."""
    folder = tmp_path_factory.mktemp("ddp")
    driver = folder / "astrovader_with_prior_checksums.py"
    driver.write_text(DRIVER)
    vade, two_stage = folder / "vade", folder / "two-stage"
    per_rank(vade_config).to_yaml(folder / "vade.yaml")
    per_rank(two_stage_config).to_yaml(folder / "two-stage.yaml")

    launcher = subprocess.Popen(
        [sys.executable, str(driver), "train", str(uneven_cache), "--config", str(folder / "vade.yaml"),
         "--out", str(vade)],
        env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    metrics = vade / "metrics.csv"
    deadline = time.time() + 240
    while time.time() < deadline and launcher.poll() is None:
        if metrics.exists() and len(pd.read_csv(metrics)) >= 4:
            break
        time.sleep(0.05)
    assert launcher.poll() is None, "the run finished (or failed) before it could be killed"
    os.killpg(launcher.pid, signal.SIGKILL)  # the launcher (rank 0) and the rank it started
    launcher.wait()
    killed = {
        "model_written": (vade / "model.safetensors").exists(),
        "checkpoint": load_safe(vade / "checkpoints" / "last.ckpt"),
    }

    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(driver),
        "train", "--resume", str(vade), "+",
        "train", str(blob_cache), "--config", str(folder / "two-stage.yaml"), "--out", str(two_stage),
    ]
    result = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("model written to") == 2  # one line per command, from rank 0 only
    return {"vade": vade, "two_stage": two_stage, "killed": killed}


def test_two_processes_match_one_process_to_rounding_without_noise(
    two_process_runs, blob_cache, two_stage_config, tmp_path, one_thread
):
    single = train_run(tmp_path / "single", two_stage_config, blob_cache, progress=False)
    ddp = two_process_runs["two_stage"]
    assert_trained_by(ddp, 2)
    assert_same_prior_on_every_rank(ddp)
    a, b = weights(single), weights(ddp)
    assert network_difference(a, b) < 1e-5
    # The final GMM sees the same embeddings in the same order; on the tiny model's nearly
    # collapsed embeddings its weights still move by ~1e-3 for 1e-7 changes of the inputs.
    np.testing.assert_allclose(sorted_mixture_weights(a), sorted_mixture_weights(b), atol=0.01)
    one, two = pd.read_csv(single / "metrics.csv"), pd.read_csv(ddp / "metrics.csv")
    assert list(two["epoch"]) == list(range(two_stage_config.train.total_epochs))  # written once per epoch
    numbers = one.select_dtypes("number").columns
    np.testing.assert_allclose(two[numbers], one[numbers], rtol=1e-5)


def test_killed_two_process_run_resumes_and_matches_one_process(
    two_process_runs, uneven_cache, vade_config, tmp_path, one_thread
):
    killed = two_process_runs["killed"]
    assert not killed["model_written"]
    assert killed["checkpoint"]["epoch"] >= 2  # the resume starts after the mixture initialisation
    assert bool(killed["checkpoint"]["state_dict"]["model.prior.initialised"])
    ddp = two_process_runs["vade"]
    assert_trained_by(ddp, 2)
    assert_same_prior_on_every_rank(ddp)
    single = train_run(tmp_path / "single", vade_config, uneven_cache, progress=False)
    a, b = weights(single), weights(ddp)
    assert network_difference(a, b) < 0.05  # different noise draws (see the module docstring)
    one, two = pd.read_csv(single / "metrics.csv"), pd.read_csv(ddp / "metrics.csv")
    assert list(two["epoch"]) == list(range(vade_config.train.total_epochs))  # no epoch written twice
    np.testing.assert_allclose(two["validation_reconstruction"], one["validation_reconstruction"], rtol=0.03)
