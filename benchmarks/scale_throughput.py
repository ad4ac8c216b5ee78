"""Data-parallel training throughput: whole Lightning epochs (loader, steps, DDP gradient
all-reduce over gloo) at the same global batch with one process of one thread, one process of
all W threads, and W processes of one thread each; images/s, the fraction of the machine's
matmul peak measured in the same run, the speed-up over one thread, and the data-parallel
efficiency (W-process rate / (W x one-thread rate)).

    python -m benchmarks.scale_throughput [--quick]

Each setting trains in its own processes (`astrovader` through Lightning's launcher) on seeded
random pixels; the first epoch (warm-up) and the validation passes are left out of the timing.
FLOPs per image are counted by PyTorch's FlopCounterMode (benchmarks.common.flops_per_item).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from astrovader.config import Config
from astrovader.data.cache import split_sizes
from astrovader.runs import RunFolder
from benchmarks.common import flops_per_item, matmul_peak_gflops, result_name, write_result
from benchmarks.train_throughput import training_step


class TrainingTimer(Callback):
    """Seconds of each epoch's training batches (from the epoch start to the validation start)."""

    def __init__(self):
        self.started, self.seconds = 0.0, []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_validation_epoch_start(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self.started)


def settings(quick: bool) -> dict:
    return {"preset": "cpu", "size": 32 if quick else 64, "images": 800 if quick else 4000, "epochs": 3 if quick else 5}


def worker(arguments) -> None:
    """One setting, in the processes Lightning launches; rank 0 writes the timings."""
    from astrovader.train.run import train_run

    setting = settings(arguments.quick)
    world = arguments.devices
    base = Config.from_preset(setting["preset"], data={"image_size": setting["size"]})
    config = base.with_overrides({
        "train.batch_size": base.train.batch_size // world, "train.devices": world, "train.accelerator": "cpu",
        "train.precision": "fp32", "train.alpha_epochs": setting["epochs"], "train.periods": 0,
    })
    shape = (setting["images"], 1, setting["size"], setting["size"])
    pixels = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    timer = TrainingTimer()
    out = Path(arguments.out)
    train_run(out / "run", config, pixels, progress=False, callbacks=[timer])
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        run = RunFolder(out / "run").read_info()
        train_rows = split_sizes(setting["images"], config.data)[0]
        (out / "timing.json").write_text(json.dumps({"seconds": timer.seconds, "train_rows": train_rows, "run": run}))


def measure(world: int, threads: int, quick: bool, folder: Path) -> dict:
    out = folder / f"{world}x{threads}"
    command = [
        sys.executable, "-m", "benchmarks.scale_throughput", "--worker", "--devices", str(world), "--out", str(out),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads), ASTROVADER_ALLOCATOR="system")
    subprocess.run(command + (["--quick"] if quick else []), env=environment, check=True, stdout=subprocess.DEVNULL)
    timing = json.loads((out / "timing.json").read_text())
    steady = timing["seconds"][1:]  # the first epoch warms up allocators and thread pools
    return {
        "processes": world, "threads_per_process": threads, "backend": timing["run"]["distributed"]["backend"],
        "train_rows": timing["train_rows"], "epoch_seconds": [round(value, 3) for value in steady],
        "images_per_second": round(timing["train_rows"] / float(np.median(steady)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px, 800 images, 3 epochs (default 64 px, 4000, 5)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments)
        return
    setting = settings(arguments.quick)
    cores = os.cpu_count() or 1
    peak = matmul_peak_gflops(torch.float32)
    step, batch = training_step(setting["preset"], setting["size"], "fp32")
    gflop = flops_per_item(step, batch) / 1e9
    runs = []
    with tempfile.TemporaryDirectory(prefix="scale-benchmark-") as folder:
        for world, threads in ((1, 1), (1, cores), (cores, 1)):
            run = measure(world, threads, arguments.quick, Path(folder))
            run["fraction_of_peak"] = round(run["images_per_second"] * gflop / peak, 3)
            one_thread = (runs or [run])[0]["images_per_second"]
            run["speedup_over_one_thread"] = round(run["images_per_second"] / one_thread, 2)
            runs.append(run)
            print(f"{world} process(es) x {threads} thread(s): {run['images_per_second']:7.1f} img/s, "
                  f"{run['fraction_of_peak']:.0%} of the fp32 matmul peak, x{run['speedup_over_one_thread']}",
                  flush=True)
    efficiency = runs[2]["speedup_over_one_thread"] / cores
    print(f"data-parallel efficiency on {cores} cores: {efficiency:.2f}")
    write_result(result_name("scale_throughput", arguments.quick), {
        **setting, "gflop_per_image": round(gflop, 3), "matmul_peak_gflops": {"fp32": round(peak, 1)},
        "runs": runs, "data_parallel_efficiency": round(efficiency, 3),
    })


if __name__ == "__main__":
    main()
