"""Throughput of `astrovader simulate`: stamps per second at 64 and 96 px with 1 and 2 workers.

    python benchmarks/simulate_throughput.py [--n 1000]

Prints one line per setting and writes benchmarks/results/simulate.json. Wall-clock rates
include starting the worker processes, as a user sees them. Other work on the machine lowers
them, so the load average is recorded, and so are the CPU seconds of this process and its
workers: stamps per CPU second does not depend on what else runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
from pathlib import Path

import galsim

from astrovader.atomic import write_json_atomic
from astrovader.data.sources.simulate import simulate

RESULTS = Path(__file__).parent / "results" / "simulate.json"
SIZES = (64, 96)
WORKERS = (1, 2)


def cpu_seconds() -> float:
    """User + system time of this process and of its finished children (the workers)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def measure(n: int, size: int, workers: int) -> dict:
    cpu_before = cpu_seconds()
    with tempfile.TemporaryDirectory() as folder:
        summary = simulate(n, size, Path(folder) / "sim", seed=0, companion_fraction=0.5, workers=workers)
    cpu = cpu_seconds() - cpu_before
    return {
        "size": size, "workers": workers, "stamps": n, "seconds": round(summary.seconds, 3),
        "stamps_per_second": round(summary.stamps_per_second, 1), "cpu_seconds": round(cpu, 3),
        "stamps_per_cpu_second": round(n / cpu, 1), "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="stamps per measurement")
    arguments = parser.parse_args()
    runs = []
    for size in SIZES:
        for workers in WORKERS:
            run = measure(arguments.n, size, workers)
            print(f"{size:3d} px, {workers} worker(s): {run['stamps_per_second']:6.1f} stamps/s "
                  f"({run['seconds']:.1f} s), {run['stamps_per_cpu_second']:6.1f} stamps/CPU-s, "
                  f"load average {run['load_average_1min']:.1f}", flush=True)
            runs.append(run)
    write_json_atomic(RESULTS, {
        "runs": runs, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(), "galsim": galsim.__version__,
    })
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
