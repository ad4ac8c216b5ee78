"""Prediction throughput: images/s of the cluster catalogue for the paper (128 px) and cpu (64 px)
networks, as a fraction of the machine's peak (`benchmarks.peak`), and the wall
time this machine would need for 10^6 and 10^8 galaxies.

    python -m benchmarks.predict_throughput [--quick]

"model" times `model.inference.model_outputs` alone (encode to mu_z, gamma, posterior, likelihood,
decode for the mse, in the fixed blocks that make outputs batch-independent); "end to end" times
`predict_catalogue` on a prepared cache (read with a worker process, predict, write Parquet
parts), counted from its first to its last batch, so start-up is left out (it is reported
apart). Random weights (the speed does not depend on them); the precision is the one
`astrovader.hardware.choose_precision` picks. FLOPs per image are counted by PyTorch's
FlopCounterMode. The paper's figure to set against: 10^8 galaxies in about 7 hours on GPUs.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from astrovader.config import Config
from astrovader.data.cache import prepare
from astrovader.hardware import choose_precision
from astrovader.model.inference import BLOCK, model_outputs
from astrovader.model.io import save_model
from astrovader.model.vade import VaDE
from astrovader.predict import predict_catalogue
from benchmarks.common import fast_allocator, flops_per_item, rate, result_name, write_result
from benchmarks.peak import fraction, machine_peak

SETTINGS = [("cpu", 64), ("paper", 128)]
IMAGES = {64: (512, 4096), 128: (192, 1024)}  # end-to-end images by size: (--quick, full)
PAPER_HOURS_FOR_1E8 = 7.0


def random_model(preset: str, size: int) -> tuple[VaDE, Config]:
    torch.manual_seed(0)
    config = Config.from_preset(preset, data={"image_size": size, "crop_fraction": 1.0, "workers": 2})
    model = VaDE(config).eval()
    with torch.no_grad():  # a spread-out prior, as after training
        model.prior.means.normal_()
        model.prior.logits.normal_()
    return model, config


def random_pixels(count: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 1, size, size), dtype=np.uint8)


def end_to_end(model: VaDE, config: Config, count: int, folder: Path) -> dict:
    """predict_catalogue on a prepared cache of `count` random images (one IDX file)."""
    size = config.data.image_size
    header = b"\x00\x00\x08\x03" + b"".join(value.to_bytes(4, "big") for value in (count, size, size))
    (folder / "images-idx3-ubyte").write_bytes(header + random_pixels(count, size).tobytes())
    prepare(folder / "images-idx3-ubyte", folder / "cache", config.data)
    save_model(folder / "run", model, config)
    batches: list[tuple[float, int]] = []  # (time, images done) after each batch
    summary = predict_catalogue(folder / "run", folder / "cache", folder / "catalogue", batch_size=BLOCK,
                                workers=1, progress=lambda done, total: batches.append((time.perf_counter(), done)))
    (first_time, first_done), (last_time, last_done) = batches[0], batches[-1]
    return {
        "images": count, "call_seconds": round(summary.seconds, 2),
        "images_per_second": round((last_done - first_done) / (last_time - first_time), 1),
    }


def measure(preset: str, size: int, precision: str, peak: float, seconds: float, count: int) -> dict:
    model, config = random_model(preset, size)
    model.set_precision(precision)
    pixels = random_pixels(BLOCK, size)
    flops = flops_per_item(lambda: model_outputs(model, pixels[:BLOCK]), BLOCK)
    model_rate = rate(lambda: model_outputs(model, pixels), BLOCK, seconds=seconds, warmup=1)
    with tempfile.TemporaryDirectory() as folder:
        pipeline = end_to_end(model, config, count, Path(folder))
    achieved = model_rate * flops / 1e9
    per_second = pipeline["images_per_second"]
    return {
        "preset": preset, "size": size, "precision": precision, "threads": torch.get_num_threads(),
        "gflop_per_image": round(flops / 1e9, 3), "model_images_per_second": round(model_rate, 1),
        "achieved_gflops": round(achieved, 1), "fraction_of_peak": fraction(achieved, peak),
        "end_to_end": pipeline,
        "hours_for_1e6": round(1e6 / per_second / 3600, 2), "hours_for_1e8": round(1e8 / per_second / 3600, 1),
        "nodes_like_this_for_1e8_in_7_hours": math.ceil(1e8 / per_second / 3600 / PAPER_HOURS_FOR_1E8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings on few images")
    arguments = parser.parse_args()
    fast_allocator("benchmarks.predict_throughput")
    seconds = 2.0 if arguments.quick else 10.0
    precision = choose_precision("auto", "cpu")
    peak = machine_peak(arguments.quick)[precision]
    runs = []
    for preset, size in SETTINGS:
        run = measure(preset, size, precision, peak, seconds, IMAGES[size][0 if arguments.quick else 1])
        runs.append(run)
        print(f"{preset:6s} {size:3d} px {precision}: model {run['model_images_per_second']:7.1f} img/s "
              f"({run['fraction_of_peak']:.0%} of the peak), end to end "
              f"{run['end_to_end']['images_per_second']:7.1f} img/s; 10^8 galaxies: {run['hours_for_1e8']:,} h on "
              f"this machine, {run['nodes_like_this_for_1e8_in_7_hours']:,} such nodes for 7 h", flush=True)
    write_result(result_name("predict_throughput", arguments.quick), {
        "peak_gflops": peak, "precision": precision, "quick": arguments.quick, "runs": runs,
    })


if __name__ == "__main__":
    main()
