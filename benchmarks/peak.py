"""The machine's peak: the best sustained GFLOP/s of dense kernels (square matmuls and the 3x3
convolutions our networks are made of), per precision, measured once per machine and shared by
every throughput script, so that their fractions divide by the same number.

    python -m benchmarks.peak [--quick] [--again]

A matmul alone is not the peak: oneDNN's channels-last bf16 convolutions run ~10 % faster than
its square matmuls on AVX-512 bf16 CPUs, so a network could score "above 100 %" of it. Each
kernel is timed in `REPEATS` windows; the peak is the best kernel's median window, and its
spread ((max - min) / median over the windows) is recorded: a measurement whose spread exceeds
`STABLE_SPREAD` (a busy machine, a CPU changing its clock) is made again, up to `ATTEMPTS` times.
The record lives in results/peak.json, keyed by the machine (CPU, threads, allocator, torch):
a script on another machine, or with other threads, measures its own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from astrovader.atomic import read_json
from astrovader.hardware import cpu_has_native_bf16
from benchmarks.common import RESULTS, fast_allocator, machine, write_result

REPEATS = 5
STABLE_SPREAD = 0.05
ATTEMPTS = 3
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MACHINE_KEYS = ("cpu", "threads", "allocator", "torch", "cpu_capability")


def kernels(dtype: torch.dtype, small: bool) -> dict[str, tuple[Callable[[], object], float]]:
    """{name: (call, FLOPs per call)}; `small` for emulated bf16, which runs at ~1 GFLOP/s."""
    sizes, channels = ((256,), (32,)) if small else ((1024, 2048), (64, 128))
    found = {}
    for size in sizes:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        found[f"matmul {size}"] = (lambda a=a, b=b: a @ b, 2.0 * size**3)
    for width in channels:
        batch, side = (4, 16) if small else (32, 32)
        x = torch.randn(batch, width, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(width, width, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
        flops = 2.0 * batch * width * width * 9 * side * side
        found[f"conv 3x3 {width} channels"] = (lambda x=x, w=w: F.conv2d(x, w, padding=1), flops)
    return found


def windows(call: Callable[[], object], flops: float, seconds: float) -> list[float]:
    """GFLOP/s of `call` in each of REPEATS windows of about `seconds`."""
    call(), call()  # warm-up: thread pools, caches, oneDNN's kernel choice
    rates = []
    for _ in range(REPEATS):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or count < 2:
            call()
            count += 1
        rates.append(flops * count / (time.perf_counter() - started) / 1e9)
    return rates


def measure_precision(precision: str, seconds: float) -> dict:
    small = precision == "bf16" and not cpu_has_native_bf16()
    for attempt in range(1, ATTEMPTS + 1):
        by_kernel = {name: windows(call, flops, seconds) for name, (call, flops) in kernels(DTYPES[precision], small).items()}
        best = max(by_kernel, key=lambda name: statistics.median(by_kernel[name]))
        rates = by_kernel[best]
        spread = (max(rates) - min(rates)) / statistics.median(rates)
        if spread <= STABLE_SPREAD:
            break
    return {
        "gflops": round(statistics.median(rates), 1), "kernel": best, "spread": round(spread, 3), "attempts": attempt,
        "stable": spread <= STABLE_SPREAD,
        "kernels": {name: round(statistics.median(values), 1) for name, values in by_kernel.items()},
    }


def same_machine(record: dict, here: dict) -> bool:
    return all(record.get("machine", {}).get(key) == here.get(key) for key in MACHINE_KEYS)


def measure_peak(quick: bool = False) -> dict:
    """Measure both precisions and write results/peak.json."""
    seconds = 0.5 if quick else 1.5
    result = {"quick": quick, "window_seconds": seconds, "repeats": REPEATS,
              **{precision: measure_precision(precision, seconds) for precision in DTYPES}}
    write_result("peak", result, echo=False)
    return read_json(RESULTS / "peak.json")


def machine_peak(quick: bool = False) -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s}: the shared record when it was made on this machine (and
    is not a quick one serving a full run), else a new measurement."""
    path = RESULTS / "peak.json"
    record = read_json(path) if path.exists() else {}
    if not (same_machine(record, machine()) and (quick or not record.get("quick"))):
        record = measure_peak(quick)
    return {precision: record[precision]["gflops"] for precision in DTYPES}


def fraction(gflops: float, peak: float) -> float:
    """`gflops` as a fraction of `peak`; above 1 means a kernel outran every peak kernel, which
    is reported (the peak suite would need that kernel), never hidden."""
    share = gflops / peak
    if share > 1:
        print(f"warning: {gflops:.1f} GFLOP/s is {share:.0%} of the measured peak {peak:.1f}: "
              "benchmarks/peak.py misses a faster kernel", flush=True)
    return round(share, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (0.5 s instead of 1.5 s)")
    parser.add_argument("--again", action="store_true", help="measure even if this machine has a record")
    arguments = parser.parse_args()
    fast_allocator("benchmarks.peak")
    record = measure_peak(arguments.quick) if arguments.again else None
    peaks = machine_peak(arguments.quick) if record is None else {p: record[p]["gflops"] for p in DTYPES}
    record = read_json(RESULTS / "peak.json")
    for precision in DTYPES:
        entry = record[precision]
        print(f"{precision}: {peaks[precision]:.1f} GFLOP/s ({entry['kernel']}, spread {entry['spread']:.1%} over "
              f"{REPEATS} windows, {'stable' if entry['stable'] else 'NOT stable'})", flush=True)


if __name__ == "__main__":
    main()
