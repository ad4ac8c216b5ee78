"""Generation throughput: synthetic images/s (c ~ Cat(pi), z ~ N(mu_c, sigma_c^2), decode in the
fixed blocks that make the output independent of the chunk size) for the cpu and paper networks
at 64 and 128 px, as a fraction of the machine's peak (`benchmarks.peak`); and the
same end to end, streamed to .npy + Parquet.

    python -m benchmarks.generate_throughput [--quick]

Random weights (the speed does not depend on them); the precision is the one
`astrovader.hardware.choose_precision` picks. FLOPs per image are counted by PyTorch's
FlopCounterMode on the decoder. The paper's figure to set against: 300,000 images of 128 px a
minute on three V100 GPUs (5,000 images/s).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from astrovader.config import Config
from astrovader.generate.latents import sample_images
from astrovader.generate.writers import write_samples
from astrovader.hardware import choose_precision
from astrovader.model.inference import BLOCK, decode
from astrovader.model.vade import VaDE
from benchmarks.common import fast_allocator, flops_per_item, rate, result_name, write_result
from benchmarks.peak import fraction, machine_peak

SETTINGS = [("cpu", 64), ("cpu", 128), ("paper", 64), ("paper", 128)]
PAPER_IMAGES_PER_SECOND = 300_000 / 60  # three V100s, 128 px


def generator_model(preset: str, size: int, precision: str) -> VaDE:
    torch.manual_seed(0)
    model = VaDE(Config.from_preset(preset, data={"image_size": size})).eval()
    model.set_precision(precision)
    with torch.no_grad():  # a spread-out prior, as after training
        model.prior.means.normal_()
        model.prior.logits.normal_()
    return model


def measure(preset: str, size: int, precision: str, peak: float, seconds: float, images: int) -> dict:
    model = generator_model(preset, size, precision)
    flops = flops_per_item(lambda: decode(model, torch.zeros(BLOCK, model.config.model.latent_dim)), BLOCK)
    seeds = iter(range(10**9))
    images_per_second = rate(lambda: sample_images(model, images, seed=next(seeds)), images, seconds=seconds, warmup=1)
    achieved = images_per_second * flops / 1e9
    return {
        "preset": preset, "size": size, "precision": precision, "images_per_step": images,
        "images_per_second": round(images_per_second, 1), "gflop_per_image": round(flops / 1e9, 3),
        "achieved_gflops": round(achieved, 1), "fraction_of_peak": fraction(achieved, peak),
        "fraction_of_paper_3xV100": round(images_per_second / PAPER_IMAGES_PER_SECOND, 4) if size == 128 else None,
    }


def streamed(preset: str, size: int, precision: str, count: int) -> dict:
    """Images/s of `write_samples` (decode + .npy memory map + Parquet + PNG grids) and of the
    model alone on the same `count` images (`sample_images`, the arrays kept in memory), side by
    side: the stream's share of the model-only rate."""
    model = generator_model(preset, size, precision)
    sample_images(model, BLOCK, seed=0)  # warm-up
    started = time.perf_counter()
    sample_images(model, count, seed=0)
    model_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_samples(model, folder, count, seed=0)
        seconds = time.perf_counter() - started
    return {"preset": preset, "size": size, "precision": precision, "images": count,
            "seconds": round(seconds, 2), "images_per_second": round(count / seconds, 1),
            "model_images_per_second": round(count / model_seconds, 1),
            "fraction_of_model_rate": round(model_seconds / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings and a small streamed run")
    arguments = parser.parse_args()
    fast_allocator("benchmarks.generate_throughput")
    seconds, images, stream_count = (1.0, BLOCK, 2 * BLOCK) if arguments.quick else (10.0, 4 * BLOCK, 50 * BLOCK)
    precision = choose_precision("auto", "cpu")
    peak = machine_peak(arguments.quick)[precision]
    runs = []
    for preset, size in SETTINGS:
        run = measure(preset, size, precision, peak, seconds, images)
        runs.append(run)
        print(f"{preset:6s} {size:3d} px {precision}: {run['images_per_second']:8.1f} img/s, "
              f"{run['gflop_per_image']:.3f} GFLOP/img, {run['fraction_of_peak']:.0%} of the {precision} peak",
              flush=True)
    stream = streamed("cpu", 64, precision, stream_count)
    print(f"cpu     64 px streamed to .npy + Parquet: {stream['images_per_second']:.1f} img/s, "
          f"{stream['fraction_of_model_rate']:.0%} of the model alone on the same images", flush=True)
    write_result(result_name("generate_throughput", arguments.quick), {
        "quick": arguments.quick, "peak_gflops": peak, "precision": precision,
        "paper_images_per_second_3xV100": PAPER_IMAGES_PER_SECOND, "runs": runs, "streamed": stream,
    })


if __name__ == "__main__":
    main()
