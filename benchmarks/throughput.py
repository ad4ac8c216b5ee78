"""The throughput scripts, run one after the other, and one Markdown table of their results:
the machine's peaks (`benchmarks.peak`, measured first and shared by every script), then training, prediction and generation images/s per preset and size, each
as a fraction of the peak measured in the same script's run, data-parallel scaling and the
data layer.

Each script runs in its own process (`python -m benchmarks.<name>_throughput [--quick]`, as by
hand), so one script's thread pools and memory never colour the next one's numbers; its output
goes to results/logs/<name>_throughput.log and its numbers to results/<name>_throughput.json
(a quick run's: under results/quick/, so it never overwrites a full run's).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from astrovader.atomic import read_json, write_text_atomic
from benchmarks.common import RESULTS, machine_description, result_name

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPTS = ("train", "predict", "generate", "data", "scale")


def share_peak(quick: bool, echo=print) -> None:
    """Measure the machine's peak once (`benchmarks.peak`, reused if this machine has a record)
    before the scripts, which all read it."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.peak", *(["--quick"] if quick else [])], cwd=REPOSITORY)
    if done.returncode:
        echo(f"throughput: benchmarks.peak failed (exit status {done.returncode}); each script measures its own")


def run_scripts(names: list[str], quick: bool, echo=print) -> dict[str, dict]:
    """{name: {"seconds", "result" (the script's JSON, or None), "error"}} for each script."""
    outcomes = {}
    for name in names:
        module = f"{name}_throughput"
        log = RESULTS / result_name(f"logs/{module}.log", quick)
        log.parent.mkdir(parents=True, exist_ok=True)
        echo(f"throughput: {module}{' --quick' if quick else ''} (log: {log})")
        started = time.time()
        with open(log, "w") as handle:
            done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *(["--quick"] if quick else [])],
                                  cwd=REPOSITORY, stdout=handle, stderr=subprocess.STDOUT)
        path = RESULTS / f"{result_name(module, quick)}.json"
        fresh = done.returncode == 0 and path.exists() and path.stat().st_mtime >= started
        outcomes[name] = {
            "seconds": round(time.time() - started, 1),
            "result": read_json(path) if fresh else None,
            "error": None if fresh else f"exit status {done.returncode}; see {log}",
        }
    return outcomes


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.1%}"


def throughput_table(outcomes: dict[str, dict], quick: bool) -> str:
    """Markdown for the outcomes of `run_scripts`."""
    lines = [f"# Throughput ({'quick' if quick else 'full'})", ""]
    train = (outcomes.get("train") or {}).get("result")
    if train:
        peak, default = train["peak_gflops"], train["default_precision"]
        lines += [
            f"Machine: {machine_description(train['machine'])}.", "",
            f"Peak (`benchmarks.peak`: the best of square matmuls and 3x3 convolutions, shared by every script): "
            f"fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s.", "",
            f"Default precision: {default}. " + (
                f"This CPU has no native bf16 (emulated, its matmuls run {peak['fp32'] / peak['bf16']:.0f}x slower "
                "than fp32), so the default path IS the naive fp32 NCHW PyTorch loop of the same network: the "
                "in-house baseline has no separate row."
                if default == "fp32" else
                "bf16 autocast + channels_last; the naive rows are a plain fp32 NCHW PyTorch loop of the same "
                "network, the in-house baseline."), "",
        ]
    lines += [
        "Every fraction is of the peak of the same precision.", "",
        "| Work | Preset | Size | Path | Images/s | GFLOP/image | Fraction of peak |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += training_rows(train) + prediction_rows(outcomes) + generation_rows(outcomes) + scaling_rows(outcomes)
    lines += data_rows(outcomes)
    lines += ["", "| Script | Seconds | Outcome |", "|---|---|---|"]
    lines += [f"| {name}_throughput | {outcome['seconds']} | {outcome['error'] or 'ok'} |"
              for name, outcome in outcomes.items()]
    return "\n".join(lines) + "\n"


def row(*cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def training_rows(train: dict | None) -> list[str]:
    if not train:
        return []
    return [row("training step", run["preset"], f"{run['size']} px", f"{run['path']} ({run['precision']})",
                run["images_per_second"], run["gflop_per_image"], percent(run["fraction_of_peak"]))
            for run in train["runs"]]


def prediction_rows(outcomes) -> list[str]:
    result = (outcomes.get("predict") or {}).get("result")
    if not result:
        return []
    lines = []
    for run in result["runs"]:
        path = f"default ({run['precision']})"
        lines.append(row("prediction, model", run["preset"], f"{run['size']} px", path, run["model_images_per_second"],
                         run["gflop_per_image"], percent(run["fraction_of_peak"])))
        end_to_end = run["end_to_end"]["images_per_second"]
        lines.append(row("prediction, cache to Parquet", run["preset"], f"{run['size']} px", path, end_to_end,
                         run["gflop_per_image"], percent(end_to_end * run["gflop_per_image"] / result["peak_gflops"])))
    return lines


def generation_rows(outcomes) -> list[str]:
    result = (outcomes.get("generate") or {}).get("result")
    if not result:
        return []
    lines = [row("generation", run["preset"], f"{run['size']} px", f"default ({run['precision']})",
                 run["images_per_second"], run["gflop_per_image"], percent(run["fraction_of_peak"]))
             for run in result["runs"]]
    stream = result["streamed"]
    lines.append(row("generation, model alone on the streamed images", stream["preset"], f"{stream['size']} px",
                     f"default ({stream['precision']})", stream.get("model_images_per_second", "-"), "-", "-"))
    share = stream.get("fraction_of_model_rate")
    lines.append(row("generation, streamed to .npy + Parquet", stream["preset"], f"{stream['size']} px",
                     f"default ({stream['precision']})", stream["images_per_second"], "-",
                     "-" if share is None else f"{share:.0%} of the model alone"))
    return lines


def scaling_rows(outcomes) -> list[str]:
    result = (outcomes.get("scale") or {}).get("result")
    if not result:
        return []
    return [row(f"training epochs, {run['processes']} process(es) x {run['threads_per_process']} thread(s)"
                + (" (the default)" if run["default"] else ""), result["preset"], f"{size['size']} px",
                f"default ({run['precision']})", run["images_per_second"], size["gflop_per_image"],
                percent(run["fraction_of_peak"]))
            for size in result["by_size"] for run in size["runs"]]


def data_rows(outcomes) -> list[str]:
    result = (outcomes.get("data") or {}).get("result")
    if not result:
        return []
    lines = [row(f"prepare GZ1 JPEG, {run['workers']} worker(s)", "-", "64 px", "-", run["images_per_second"], "-", "-")
             for run in result["prepare"]]
    lines.append(row("training loader (memory map + flips)", "-", "64 px", "-", result["loader_images_per_second"], "-", "-"))
    lines += [row(f"simulate, {run['workers']} worker(s)", "-", f"{run['size']} px", "-", run["stamps_per_second"], "-", "-")
              for run in result["simulate"]]
    return lines


def write_table(outcomes: dict[str, dict], quick: bool) -> Path:
    return write_text_atomic(RESULTS / result_name("throughput.md", quick), throughput_table(outcomes, quick))
