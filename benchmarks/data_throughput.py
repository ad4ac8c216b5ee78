"""Data-layer throughput: `prepare` on the real GZ1 cutouts, the training loader, `simulate`.

    python -m benchmarks.data_throughput [--quick] [--gz1 ../shared/data/gz1-sdss]

The loader must feed at least 10x what the model trains on: the cpu-preset training rate is
measured in the same run and the ratio reported.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from astrovader.config import DataConfig
from astrovader.data.cache import Cache, prepare
from astrovader.data.loader import EpochBatches
from benchmarks.common import rate, result_name, write_result
from benchmarks.simulate_throughput import measure as simulate_rate
from benchmarks.train_throughput import training_step

GZ1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz1-sdss"


def prepare_rate(source: Path, workers: int, limit: int | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = DataConfig(workers=workers, where=f"index < {limit}" if limit else None)
        summary = prepare(source / "catalog.csv", Path(folder) / "cache", config)
    return {
        "workers": workers, "images": summary.inputs, "seconds": round(summary.seconds, 2),
        "images_per_second": round(summary.inputs / summary.seconds, 1),
    }


def loader_rate(cache_dir: Path, seconds: float) -> float:
    cache = Cache(cache_dir)
    batches = EpochBatches(cache.images, cache.split("train")["row"].to_numpy(), batch_size=64, seed=0)
    position = {"epoch": 0, "index": 0}

    def next_batch() -> None:
        if position["index"] == len(batches):
            position["epoch"] += 1
            position["index"] = 0
            batches.set_epoch(position["epoch"])
        batches[position["index"]]
        position["index"] += 1

    return rate(next_batch, 64, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset and short timings")
    parser.add_argument("--gz1", type=Path, default=GZ1, help="folder with catalog.csv and images/")
    arguments = parser.parse_args()
    limit = 1000 if arguments.quick else None
    seconds = 2.0 if arguments.quick else 6.0

    prepared = [prepare_rate(arguments.gz1, workers, limit) for workers in (1, 2)]
    with tempfile.TemporaryDirectory() as folder:
        prepare(arguments.gz1 / "catalog.csv", Path(folder) / "cache", DataConfig(where="index < 2000"))
        loader = loader_rate(Path(folder) / "cache", seconds)
    step, batch = training_step("cpu", 64, "fp32")
    training = rate(step, batch, seconds=seconds)
    simulated = [simulate_rate(300 if arguments.quick else 2000, size, 2) for size in (64, 96)]
    for run in prepared:
        print(f"prepare (GZ1 423 px JPEG -> 64 px), {run['workers']} worker(s): {run['images_per_second']} img/s")
    print(f"loader: {loader:.0f} img/s = {loader / training:.0f}x the cpu-preset training rate ({training:.0f} img/s)")
    for run in simulated:
        print(f"simulate {run['size']} px, 2 workers: {run['stamps_per_second']} stamps/s")
    write_result(result_name("data_throughput", arguments.quick), {
        "prepare": prepared,
        "loader_images_per_second": round(loader, 1),
        "training_images_per_second_cpu_preset": round(training, 1),
        "loader_over_training": round(loader / training, 1),
        "simulate": simulated,
        "note": "prepare decodes, crops, grays, resizes and scales; loader reads the memory map and flips",
    })


if __name__ == "__main__":
    main()
