"""Report speed: wall time of `astrovader report` per section on real galaxies, the encoding rate
in images/s and as a fraction of the machine's peak (`benchmarks.peak`).

    python -m benchmarks.report_throughput [--quick]

Galaxies: the GZ1 SDSS cutouts in ../shared/data (400 with --quick, all 6,664 otherwise),
prepared at 64 px for the cpu network; random images when the data is absent. Every object
is analysed (split "all"). Random weights with a spread-out prior (the timings do not depend on
training); the precision is the one `astrovader.hardware.choose_precision` picks. Preparing the
cache is timed apart. The target: a couple of minutes for thousands of galaxies on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from astrovader.analysis.objects import objects_from_cache
from astrovader.config import Config
from astrovader.data.cache import prepare
from astrovader.hardware import choose_precision, runtime_info
from astrovader.model.inference import BLOCK, model_outputs
from astrovader.model.io import save_model
from astrovader.model.vade import VaDE
from astrovader.report import ReportOptions, build_report
from astrovader.report.sections import SECTIONS
from astrovader.runs import RunFolder
from benchmarks.common import fast_allocator, flops_per_item, result_name, write_result
from benchmarks.peak import fraction, machine_peak

GZ1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "gz1-sdss" / "catalog.csv"


def galaxy_catalogue(folder: Path, count: int) -> Path:
    """The first `count` GZ1 galaxies (absolute paths), or `count` random IDX images."""
    if GZ1.exists():
        table = pd.read_csv(GZ1, dtype={"id_str": str}).head(count)
        table["file_loc"] = [str(GZ1.parent / path) for path in table["file_loc"]]
        table.to_csv(folder / "catalog.csv", index=False)
        return folder / "catalog.csv"
    size = 85
    header = b"\x00\x00\x08\x03" + b"".join(value.to_bytes(4, "big") for value in (count, size, size))
    pixels = np.random.default_rng(0).integers(0, 256, (count, size, size), dtype=np.uint8)
    (folder / "images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    return folder / "images-idx3-ubyte"


def random_run(folder: Path, cache: Path, config: Config, precision: str) -> Path:
    torch.manual_seed(0)
    model = VaDE(config).eval()
    with torch.no_grad():  # a spread-out prior, as after training
        model.prior.means.normal_()
        model.prior.logits.normal_()
    save_model(folder, model, config)
    RunFolder(folder).write_info({"data": {"kind": "cache", "cache": str(cache)}, "status": "complete",
                                  "runtime": runtime_info(precision)})
    return folder


def encode_flops(config: Config) -> float:
    model = VaDE(config).eval()
    pixels = np.zeros((BLOCK, *config.data.input_shape), np.uint8)
    return flops_per_item(lambda: model_outputs(model, pixels), BLOCK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 galaxies instead of all 6,664")
    arguments = parser.parse_args()
    fast_allocator("benchmarks.report_throughput")
    count = 400 if arguments.quick else 6664
    precision = choose_precision("auto", "cpu")
    peak = machine_peak(arguments.quick)[precision]
    config = Config.from_preset("cpu", data={"workers": 2}, train={"precision": precision})
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        started = time.perf_counter()
        summary = prepare(galaxy_catalogue(folder, count), folder / "cache", config.data)
        prepare_seconds = time.perf_counter() - started
        run = random_run(folder / "run", folder / "cache", config, precision)
        loaded = RunFolder(run).open()
        started = time.perf_counter()
        objects_from_cache(loaded.model, loaded.cache(), "all")  # the report's encoding step, timed alone
        encode_rate = summary.accepted / (time.perf_counter() - started)
        marks: list[float] = []
        started = time.perf_counter()
        report = build_report(run, folder / "report", ReportOptions(split="all"),
                              progress=lambda done, total: marks.append(time.perf_counter()))
    total = report.seconds
    sections = dict(zip([step.__name__ for step in SECTIONS], np.diff([started, *marks]).round(2).tolist()))
    # Before the first section: loading the model and encoding every object (model_outputs).
    first = sections.pop(SECTIONS[0].__name__)
    flops = encode_flops(config)
    achieved = encode_rate * flops / 1e9
    result = {
        "quick": arguments.quick, "galaxies": report.objects, "precision": precision, "threads": torch.get_num_threads(),
        "peak_gflops": peak, "prepare_seconds": round(prepare_seconds, 1),
        "accepted": summary.accepted, "report_seconds": round(total, 1), "figures": report.figures,
        "load_encode_and_training_section_seconds": first, "section_seconds": sections,
        "objects_per_second_whole_report": round(report.objects / total, 1),
        "gflop_per_encoded_image": round(flops / 1e9, 3), "encode_images_per_second": round(encode_rate, 1),
        "encode_fraction_of_peak": fraction(achieved, peak),
    }
    print(f"report of {report.objects} galaxies (64 px, cpu net, {precision}): {total:.1f} s, {report.figures} figures; "
          f"load + encode + losses {first:.1f} s; sections {sections}; encoding {encode_rate:.0f} img/s "
          f"({achieved / peak:.0%} of the {precision} peak)", flush=True)
    write_result(result_name("report_throughput", arguments.quick), result)


if __name__ == "__main__":
    main()
