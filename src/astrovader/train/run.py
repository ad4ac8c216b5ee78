"""A training run from data to a saved model, resumable after a kill at any point, in a run
folder (`runs.RunFolder`: config.yaml, run.json, metrics.csv, checkpoints/, the model, cache/)."""

from __future__ import annotations

import atexit
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback

from astrovader.atomic import read_json
from astrovader.config import Config
from astrovader.data.cache import Cache, assign_splits, prepare
from astrovader.data.loader import check_pixels
from astrovader.errors import InputError
from astrovader.hardware import choose_precision, runtime_info, trains_on_cpu, training_layout
from astrovader.runs import RunFolder
from astrovader.train.callbacks import EpochMetrics, SaveLastCheckpoint, essential_callbacks
from astrovader.train.checkpoint import SafeCheckpointIO
from astrovader.train.module import TrainingData, VaDETraining

def train_run(out: str | Path, config: Config | None = None, data: str | Path | np.ndarray | None = None,
              resume: bool = False, progress: bool = True, callbacks: Sequence[Callback] = ()) -> Path:
    """Train (or resume) a model in run folder `out` and return the folder.

    `data`: a prepared cache, a catalogue / image folder / IDX files (prepared into out/cache),
    an array (N, C, H, W) of model-ready pixels, or None for the default simulated galaxies.
    A resumed run takes its config and data from the folder (an array must be given again).
    `callbacks` run after the built-in ones (e.g. a hyper-parameter search's pruning).
    """
    out = Path(out)
    run = RunFolder(out)
    if resume:
        config, data = _resumed_settings(run, data)
    elif run.last_checkpoint.exists():
        raise InputError(f"{out}: holds a training run already; use --resume to continue it, or another --out")
    config = config or Config()
    out.mkdir(parents=True, exist_ok=True)
    training_data, source, label_names = resolve_data(data, config, out, progress)
    run.write_config(config)

    L.seed_everything(config.train.seed, workers=False, verbose=False)
    layout = _apply_layout(config.train)
    module = VaDETraining(config, training_data)
    trainer = _trainer(config, run, progress, callbacks)
    precision = choose_precision(config.train.precision, trainer.strategy.root_device.type)
    module.model.set_precision(precision)
    if trainer.global_rank == 0:
        run.write_info({"data": source, "status": "training", "runtime": runtime_info(precision), "layout": layout})

    checkpoint = run.last_checkpoint
    trainer.fit(module, ckpt_path=str(checkpoint) if resume and checkpoint.exists() else None)
    if trainer.global_rank == 0:
        from astrovader.model.io import save_model

        extra = {"epochs": trainer.current_epoch, "training_reference": _training_reference(module.model, training_data),
                 "training_inputs": Cache(source["cache"]).geometry if "cache" in source else None}
        save_model(out, module.model, config, label_names=label_names, extra=extra)
        run.write_info({
            "data": source, "status": "complete", "runtime": runtime_info(precision), "layout": layout,
            "distributed": _distributed(trainer),
        })
    if torch.distributed.is_initialized():
        atexit.unregister(_destroy_process_group)  # once, however many runs this process trains
        atexit.register(_destroy_process_group)
    return out


def _destroy_process_group() -> None:
    """Lightning leaves its process group alive; destroyed only at interpreter shutdown, gloo's
    threads can abort the process ("terminate called without an active exception",
    pytorch#190489). At exit every rank is done with collectives, so each destroys its own."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _apply_layout(train) -> dict | None:
    """On the CPU, the processes and threads of `hardware.training_layout`, with this process's
    torch threads set to them; None on an accelerator. The same seed gives the same model for a
    given layout, not across layouts: another thread count sums in another order and training
    amplifies it (tiny preset, 4 epochs, 1 against 2 threads: tensors up to 9 % apart), another
    process count draws other noise (test_distributed.py). Set train.threads to pin it."""
    if not trains_on_cpu(train):
        return None
    processes, threads = training_layout(train)
    torch.set_num_threads(threads)
    return {"processes": processes, "threads_per_process": threads}


def _training_reference(model, data: TrainingData) -> dict:
    """The training split's log-likelihoods, MSEs and component shares, against which `predict`
    and the report place new inputs (analysis.shift)."""
    from astrovader.analysis.shift import reference_rows, training_reference
    from astrovader.data.loader import read_rows
    from astrovader.model.inference import model_outputs

    model.eval()
    return training_reference(model_outputs(model, read_rows(data.images, reference_rows(data.train_rows))))


def _distributed(trainer: L.Trainer) -> dict[str, object]:
    """How many processes trained, and over which torch.distributed backend (gloo, nccl)."""
    return {
        "world_size": trainer.world_size, "num_nodes": trainer.num_nodes,
        "backend": getattr(trainer.strategy, "process_group_backend", None),
    }


def _resumed_settings(run: RunFolder, data) -> tuple[Config, object]:
    if not run.config_file.exists() or not run.info_file.exists():
        raise InputError(f"{run.path}: not a training run folder (no config.yaml / run.json) to resume")
    recorded = run.read_info()["data"]
    if isinstance(data, np.ndarray):
        return run.read_config(), data
    if recorded.get("kind") == "array":
        raise InputError(f"{run.path}: was trained on an in-memory array; resume it with fit(array, out=..., resume=True)")
    return run.read_config(), recorded


def resolve_data(data, config: Config, out: Path, progress: bool) -> tuple[TrainingData, object, list[str] | None]:
    """The training pixels and splits for any kind of `data`, and a JSON-able note of the source."""
    if isinstance(data, np.ndarray):
        return _array_data(data, config), {"kind": "array", "shape": list(data.shape)}, None
    if data is None or (isinstance(data, dict) and data.get("kind") == "simulated"):
        cache_dir = _simulated_cache(config, out, progress)
        source = {"kind": "simulated", "cache": str(cache_dir)}
    elif isinstance(data, dict):  # a resumed run's recorded source
        cache_dir = Path(data["cache"])
        source = data
    elif Cache.is_cache(data):
        cache_dir = Path(data)
        source = {"kind": "cache", "cache": str(cache_dir.resolve())}
    else:
        cache_dir = RunFolder(out).cache_folder
        _prepare_with_progress(data, cache_dir, config, progress)
        source = {"kind": "catalogue", "path": str(Path(data).resolve()), "cache": str(cache_dir.resolve())}
    cache = Cache(cache_dir)
    cache.check_matches(config.data)
    rows = {split: cache.split(split)["row"].to_numpy() for split in ("train", "validation")}
    return TrainingData(cache.images, rows["train"], rows["validation"]), source, cache.label_names


def _array_data(array: np.ndarray, config: Config) -> TrainingData:
    array = check_pixels(array, config.data, "array")
    if array.dtype != np.uint8 and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or not np.isfinite(array).all()):
        raise InputError("array pixels must be uint8, or finite floats in [0, 1]")
    splits = assign_splits(len(array), config.data)
    rows = np.arange(len(array))
    return TrainingData(array, rows[splits == "train"], rows[splits == "validation"])


def _simulated_cache(config: Config, out: Path, progress: bool) -> Path:
    from astrovader.data.sources.simulate import simulate

    folder, cache_dir = RunFolder(out).simulated_folder, RunFolder(out).cache_folder
    if rank_zero_only.rank == 0 and not (folder / "catalog.csv").exists():
        size = int(round(config.data.image_size / config.data.crop_fraction))
        simulate(n=DEFAULT_SIMULATED, size=size, out=folder, seed=config.train.seed, workers=config.data.workers)
    _prepare_with_progress(folder / "catalog.csv", cache_dir, config, progress)
    return cache_dir


DEFAULT_SIMULATED = 6000


def _prepare_with_progress(source, cache_dir: Path, config: Config, progress: bool) -> None:
    if rank_zero_only.rank > 0:
        # torchrun / srun start every rank at once: only rank 0 may write the cache. (Lightning's
        # own launcher starts the other ranks after rank 0 has prepared it.)
        if not (Cache.is_cache(cache_dir) and read_json(cache_dir / "cache.json").get("complete")):
            raise InputError(
                f"{cache_dir}: rank {rank_zero_only.rank} found no prepared cache; for torchrun or srun "
                f"launches, run `astrovader prepare` first and train on the cache"
            )
        return
    if progress:
        from astrovader.console import progress_bar

        with progress_bar("prepare") as update:
            prepare(source, cache_dir, config.data, progress=update)
    else:
        prepare(source, cache_dir, config.data)


def _trainer(config: Config, run: RunFolder, progress: bool, extra_callbacks: Sequence[Callback] = ()) -> L.Trainer:
    from lightning.pytorch.callbacks import RichProgressBar

    train = config.train
    callbacks = [
        *essential_callbacks(), EpochMetrics(run.metrics_file),
        SaveLastCheckpoint(run.last_checkpoint), *extra_callbacks,
    ]
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    _quiet_lightning()
    return L.Trainer(
        max_epochs=train.total_epochs, accelerator=train.accelerator, devices=train.devices,
        num_nodes=train.num_nodes, strategy=_strategy(train), plugins=[SafeCheckpointIO()],
        callbacks=callbacks, logger=False, enable_progress_bar=progress, enable_model_summary=False,
        num_sanity_val_steps=0, deterministic="warn", use_distributed_sampler=False, enable_checkpointing=False,
        default_root_dir=str(run.path),
    )


def _strategy(train) -> str:
    devices = train.devices
    many = train.num_nodes > 1 or (isinstance(devices, int) and devices > 1)
    # The prior takes no part in the loss before the GMM initialisation (nor ever in the
    # two-stage baseline): DDP must be told that some parameters go unused.
    return "ddp_find_unused_parameters_true" if many else "auto"


def _quiet_lightning() -> None:
    # Lightning's tips (e.g. "consider num_workers") are about loaders we designed on purpose.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*is an invalid value for `devices`.*")

