"""Training layouts: whole Lightning epochs (loader, steps, DDP gradient all-reduce over gloo)
of the cpu preset at 32, 64 and 128 px, at the same global batch, with one process of one
thread, one process of all W threads, and W processes of one thread each, in the default
precision and allocator; images/s, the fraction of the machine's peak (`benchmarks.peak`), the
speed-up over one thread, the data-parallel efficiency (W-process rate / (W x one-thread
rate)), and which layout `astrovader.hardware.training_layout` picks ("default").

    python -m benchmarks.scale_throughput [--quick] [--precision fp32]

(`--precision fp32` and ASTROVADER_ALLOCATOR=system measure what a CPU without native bf16, or a
machine without tcmalloc / jemalloc, gets.)

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
from lightning.pytorch.callbacks import Callback

from astrovader.config import Config
from astrovader.data.cache import split_sizes
from astrovader.hardware import choose_precision, training_layout
from astrovader.runs import RunFolder
from benchmarks.common import fast_allocator, flops_per_item, result_name, write_result
from benchmarks.peak import fraction, machine_peak
from benchmarks.train_throughput import training_step


class TrainingTimer(Callback):
    """Seconds of each epoch's training batches (from the epoch start to the validation start)."""

    def __init__(self):
        self.started, self.seconds = 0.0, []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_validation_epoch_start(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self.started)


IMAGES = {32: 4000, 64: 4000, 128: 1600}  # per size: ~1 minute per layout on 2 cores


def settings(quick: bool) -> dict:
    return {"preset": "cpu", "sizes": [32] if quick else sorted(IMAGES), "epochs": 3 if quick else 4}


def images_for(size: int, quick: bool) -> int:
    return 800 if quick else IMAGES[size]


def worker(arguments) -> None:
    """One setting, in the processes Lightning launches; rank 0 writes the timings."""
    from astrovader.train.run import train_run

    setting = settings(arguments.quick)
    world, size = arguments.devices, arguments.size
    base = Config.from_preset(setting["preset"], data={"image_size": size})
    config = base.with_overrides({
        "train.batch_size": base.train.batch_size // world, "train.devices": world, "train.accelerator": "cpu",
        "train.threads": int(os.environ["OMP_NUM_THREADS"]), "train.precision": arguments.precision, "train.alpha_epochs": setting["epochs"], "train.periods": 0,
    })
    images = images_for(size, arguments.quick)
    pixels = np.random.default_rng(0).integers(0, 256, (images, 1, size, size), np.uint8)
    timer = TrainingTimer()
    out = Path(arguments.out)
    train_run(out / "run", config, pixels, progress=False, callbacks=[timer])
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        run = RunFolder(out / "run").read_info()
        train_rows = split_sizes(images, config.data)[0]
        (out / "timing.json").write_text(json.dumps({"seconds": timer.seconds, "train_rows": train_rows, "run": run}))


def measure(world: int, threads: int, size: int, precision: str, quick: bool, folder: Path) -> dict:
    out = folder / f"{size}px-{world}x{threads}"
    command = [
        sys.executable, "-m", "benchmarks.scale_throughput", "--worker", "--devices", str(world),
        "--size", str(size), "--precision", precision, "--out", str(out),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run(command + (["--quick"] if quick else []), env=environment, check=True, stdout=subprocess.DEVNULL)
    timing = json.loads((out / "timing.json").read_text())
    steady = timing["seconds"][1:]  # the first epoch warms up allocators and thread pools
    return {
        "processes": world, "threads_per_process": threads, "backend": timing["run"]["distributed"]["backend"],
        "precision": timing["run"]["runtime"]["precision"], "allocator": timing["run"]["runtime"]["allocator"],
        "train_rows": timing["train_rows"], "epoch_seconds": [round(value, 3) for value in steady],
        "images_per_second": round(timing["train_rows"] / float(np.median(steady)), 1),
    }


def layouts_at(size: int, precision: str, quick: bool, peak: dict, folder: Path) -> dict:
    """The three layouts at one size, and which one the default path picks."""
    cores = os.cpu_count() or 1
    precision = choose_precision(precision, "cpu")
    step, batch = training_step(settings(quick)["preset"], size, precision)
    gflop = flops_per_item(step, batch) / 1e9
    chosen = training_layout(Config.from_preset(settings(quick)["preset"], data={"image_size": size}).train, cores)
    runs = []
    for world, threads in ((1, 1), (1, cores), (cores, 1)):
        run = measure(world, threads, size, precision, quick, folder)
        run["fraction_of_peak"] = fraction(run["images_per_second"] * gflop, peak[run["precision"]])
        run["speedup_over_one_thread"] = round(run["images_per_second"] / (runs or [run])[0]["images_per_second"], 2)
        run["default"] = (world, threads) == chosen
        runs.append(run)
        print(f"{size:3d} px, {world} process(es) x {threads} thread(s){' (default)' if run['default'] else ''}: "
              f"{run['images_per_second']:7.1f} img/s, {run['fraction_of_peak']:.0%} of the {run['precision']} peak, "
              f"x{run['speedup_over_one_thread']}", flush=True)
    fastest = max(runs, key=lambda run: run["images_per_second"])
    return {"size": size, "images": images_for(size, quick), "gflop_per_image": round(gflop, 3), "runs": runs,
            "default_is_fastest": fastest["default"],
            "data_parallel_efficiency": round(runs[2]["speedup_over_one_thread"] / cores, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px only, 800 images, 3 epochs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", help="default: 32 64 128 (--quick: 32)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="default: auto, as a run")
    parser.add_argument("--out", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments)
        return
    fast_allocator("benchmarks.scale_throughput")
    peak = machine_peak(arguments.quick)
    with tempfile.TemporaryDirectory(prefix="scale-benchmark-") as folder:
        sizes = [layouts_at(size, arguments.precision, arguments.quick, peak, Path(folder)) for size in arguments.sizes or settings(arguments.quick)["sizes"]]
    system = os.environ.get("ASTROVADER_ALLOCATOR") == "system"
    name = "scale_throughput" + ("" if arguments.precision == "auto" else f"_{arguments.precision}") + ("_system" if system else "")
    write_result(result_name(name, arguments.quick), {
        **settings(arguments.quick), "cores": os.cpu_count(), "peak_gflops": peak, "by_size": sizes,
        "allocator": "system" if system else "default",
    })


if __name__ == "__main__":
    main()
