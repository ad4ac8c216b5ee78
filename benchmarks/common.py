"""Shared benchmark helpers: the default allocator, timing loops, FLOP counts and JSON results.

Every throughput is reported in images/s and as a fraction of the machine's peak
(`benchmarks.peak`, one record shared by every script), so numbers from different machines can
be compared.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from torch.utils.flop_counter import FlopCounterMode

# ASTROVADER_BENCHMARK_RESULTS moves the results elsewhere (the tests use it to leave
# benchmarks/results/ alone).
RESULTS = Path(os.environ.get("ASTROVADER_BENCHMARK_RESULTS") or Path(__file__).resolve().parent / "results")
QUICK = "quick"  # results/quick/: a quick run's records and tables, apart from a full run's


def result_name(name: str, quick: bool) -> str:
    """`name` under results/, or under results/quick/ for a quick run: it never overwrites a full run's."""
    return f"{QUICK}/{name}" if quick else name


def fast_allocator(module: str) -> None:
    """Re-run `python -m module` with the fast allocator the CLI uses (`astrovader.hardware`), so a
    benchmark times the default path; ASTROVADER_ALLOCATOR=system keeps the system one."""
    from astrovader.hardware import reexec_with_allocator

    reexec_with_allocator(sys.argv[1:], module)


def rate(step: Callable[[], object], items_per_step: int, seconds: float = 5.0, warmup: int = 2) -> float:
    """Items per second of `step` run repeatedly for about `seconds` after `warmup` calls."""
    for _ in range(warmup):
        step()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or count < 2:
        step()
        count += 1
    return items_per_step * count / (time.perf_counter() - started)


def flops_per_item(run: Callable[[], object], items: int) -> float:
    """FLOPs of one call of `run` divided by the `items` it processes, counted by PyTorch's
    FlopCounterMode (convolutions and matmuls), not assumed."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / items


def machine() -> dict[str, object]:
    from astrovader.hardware import runtime_info

    return {**runtime_info(), "processor": platform.processor() or platform.machine(), "cpu": cpu_model()}


def machine_description(machine: dict) -> str:
    """One line naming a `machine()` record (older records lack some keys)."""
    bf16 = "native bf16" if machine.get("native_bf16") else "no native bf16"
    return (f"{machine.get('cpu', 'CPU not recorded')}, {machine.get('threads', '?')} thread(s), "
            f"{machine.get('cpu_capability', '?')}, {bf16}, allocator {machine.get('allocator', '?')}, "
            f"torch {machine.get('torch', '?')}")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), so results name the machine they come from."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def write_result(name: str, result: dict, echo: bool = True) -> Path:
    """Write benchmarks/results/<name>.json (with the machine description) and, with `echo`,
    print it. `name` may hold a sub-folder ("clustering/gz1-vade-conv-seed0")."""
    from astrovader.atomic import write_json_atomic

    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **result}
    path = write_json_atomic(RESULTS / f"{name}.json", payload)
    if echo:
        print(json.dumps(payload, indent=2, default=str))
    return path
