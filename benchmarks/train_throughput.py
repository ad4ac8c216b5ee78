"""Training throughput: images/s of one s3VDC training step (encode, sample, decode, the loss
with the weights of the preset's last epoch, backward, Adam) for the paper, cpu and tiny
networks at 128 and 64 px, as a fraction of the machine's peak (`benchmarks.peak`, shared by
every script of a run).

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
from astrovader.train.module import step_loss
from astrovader.train.schedule import phase_at
from benchmarks.common import fast_allocator, flops_per_item, rate, result_name, write_result
from benchmarks.peak import fraction, machine_peak

SETTINGS = [("paper", 128), ("paper", 64), ("cpu", 64), ("cpu", 128), ("tiny", 64)]
LARGEST_BATCH = 32  # the paper's 180 would make one step of its 128 px network last ~15 s here


def training_step(preset: str, size: int, precision: str, batch: int | None = None):
    """(step function, images per step) for one optimiser step of a fresh model, at the preset's
    own batch size (the cpu preset's 16), at most LARGEST_BATCH."""
    torch.manual_seed(0)
    config = Config.from_preset(preset, data={"image_size": size})
    batch = batch or min(config.train.batch_size, LARGEST_BATCH)
    model = VaDE(config)
    model.set_precision(precision)
    with torch.no_grad():  # a fitted-looking prior so the mixture terms do real work
        model.prior.means.normal_()
        model.prior.initialised.fill_(True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(batch, config.data.bands, size, size)
    generator = torch.Generator().manual_seed(0)

    phase = phase_at(config.train.total_epochs - 1, config.train)  # the preset's own loss weights

    def step() -> None:
        loss, _ = step_loss(model, images, generator, phase)
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
        "achieved_gflops": round(achieved, 1), "fraction_of_peak": fraction(achieved, peak[precision]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings, fewer settings")
    arguments = parser.parse_args()
    fast_allocator("benchmarks.train_throughput")
    seconds = 2.0 if arguments.quick else 8.0
    default = choose_precision("auto", "cpu")
    peak = machine_peak(arguments.quick)
    settings = SETTINGS[2:4] if arguments.quick else SETTINGS
    runs = []
    for preset, size in settings:
        for label, precision in (("default", default), ("naive", "fp32")):
            if label == "naive" and default == "fp32":
                continue  # identical to the default path on this machine
            run = measure(preset, size, precision, peak, seconds)
            runs.append({"path": label, **run})
            print(f"{preset:6s} {size:3d} px {label:7s} {precision}: {run['images_per_second']:7.1f} img/s, "
                  f"{run['fraction_of_peak']:.0%} of the {precision} peak", flush=True)
    write_result(result_name("train_throughput", arguments.quick), {"peak_gflops": peak, "default_precision": default, "runs": runs})


if __name__ == "__main__":
    main()
