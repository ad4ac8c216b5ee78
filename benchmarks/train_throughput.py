"""Training throughput: images/s of one s3VDC training step (encode, sample, decode, all loss
terms, backward, Adam) for the paper, cpu and tiny networks at 128 and 64 px, as a fraction of
the machine's matmul peak measured in the same run.

    python -m benchmarks.train_throughput [--quick]

"default" is the path a run takes (the precision `astrovader.hardware.choose_precision` picks:
bf16 + channels_last only on CPUs with native bf16); "naive" is a plain fp32 NCHW PyTorch loop
of the same network, the in-house baseline. FLOPs per image are counted by PyTorch's
FlopCounterMode, not assumed.
"""

from __future__ import annotations

import argparse

import torch

from astrovader.config import Config
from astrovader.hardware import choose_precision
from astrovader.model.vade import VaDE
from benchmarks.common import flops_per_item, matmul_peak_gflops, rate, result_name, write_result

SETTINGS = [("paper", 128), ("paper", 64), ("cpu", 64), ("cpu", 128), ("tiny", 64)]
BATCH = 32


def training_step(preset: str, size: int, precision: str, batch: int = BATCH):
    """(step function, images per step) for one optimiser step of a fresh model."""
    torch.manual_seed(0)
    config = Config.from_preset(preset, data={"image_size": size})
    model = VaDE(config)
    model.set_precision(precision)
    with torch.no_grad():  # a fitted-looking prior so the mixture terms do real work
        model.prior.means.normal_()
        model.prior.initialised.fill_(True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(batch, config.data.bands, size, size)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        terms = model.loss_terms(images, generator)
        loss = terms["reconstruction"] + 0.01 * terms["l2"] + 0.3 * terms["kl_mixture"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step, batch


def measure(preset: str, size: int, precision: str, peak: dict[str, float], seconds: float) -> dict:
    step, batch = training_step(preset, size, precision)
    flops = flops_per_item(step, batch)
    images_per_second = rate(step, batch, seconds=seconds)
    achieved = images_per_second * flops / 1e9
    return {
        "preset": preset, "size": size, "precision": precision, "batch": batch,
        "images_per_second": round(images_per_second, 1), "gflop_per_image": round(flops / 1e9, 3),
        "achieved_gflops": round(achieved, 1), "fraction_of_peak": round(achieved / peak[precision], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings, fewer settings")
    arguments = parser.parse_args()
    seconds = 2.0 if arguments.quick else 8.0
    default = choose_precision("auto", "cpu")
    peak = {"fp32": matmul_peak_gflops(torch.float32)}
    # Emulated bf16 (CPUs without it, where fp32 is the default) runs at ~0.3 GFLOP/s: three
    # 2048^2 products would take minutes, three 1024^2 ones take seconds.
    emulated = default == "fp32"
    peak["bf16"] = matmul_peak_gflops(torch.bfloat16, size=1024 if emulated else 2048, seconds=1.0 if emulated else 2.0)
    settings = SETTINGS[2:4] if arguments.quick else SETTINGS
    runs = []
    for preset, size in settings:
        for label, precision in (("default", default), ("naive", "fp32")):
            if label == "naive" and default == "fp32":
                continue  # identical to the default path on this machine
            run = measure(preset, size, precision, peak, seconds)
            runs.append({"path": label, **run})
            print(f"{preset:6s} {size:3d} px {label:7s} {precision}: {run['images_per_second']:7.1f} img/s, "
                  f"{run['fraction_of_peak']:.0%} of the {precision} matmul peak", flush=True)
    write_result(result_name("train_throughput", arguments.quick), {"matmul_peak_gflops": peak, "default_precision": default, "runs": runs})


if __name__ == "__main__":
    main()
