"""The hardware this runs on, and the speed settings measured on CPUs before any code (METHOD.md),
chosen for it automatically.

- A faster allocator (tcmalloc / jemalloc) makes the same PyTorch code 1.1-2.4x faster:
  the launcher re-executes itself with LD_PRELOAD when the system has one; when it has none
  (a fresh machine: `pip install` cannot add one), with glibc's malloc told to keep freed memory
  instead of returning it to the system after every step (GLIBC_TUNING), which measured as fast
  as tcmalloc (benchmarks/README.md, "Allocators").
- bf16 autocast + channels_last pay only on CPUs with native bf16 (AVX-512 BF16 / AMX); on
  AVX2 machines bf16 is emulated and ~10x SLOWER, so fp32 is chosen there.
- Work spread over cores (decoding images, simulating galaxies) runs in spawned processes
  (`spawn_map`).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

REEXEC_MARKER = "ASTROVADER_REEXEC"
ALLOCATORS = (
    "libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libjemalloc.so.2",
)
# glibc hands blocks over its dynamic mmap threshold straight back to the kernel when freed, so a
# training step pays page faults for the same activations again and again (240 against 325
# images/s for the cpu preset at 64 px); these keep them in the heap. The process's memory then
# stays at its peak, which a training or prediction run reaches anyway.
GLIBC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(16 << 30)}
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_allocator() -> str | None:
    for directory in _LIBRARY_DIRS:
        for name in ALLOCATORS:
            candidate = Path(directory) / name
            if candidate.exists():
                return str(candidate)
    return None


def active_allocator() -> str:
    """tcmalloc or jemalloc (preloaded), glibc-tuned (GLIBC_TUNING set), or system."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc"):
        if name in preload:
            return name
    if all(key in os.environ for key in GLIBC_TUNING):
        return "glibc-tuned"
    return "system"


def reexec_with_allocator(argv: list[str], module: str = "astrovader") -> None:
    """Replace this process by `python -m module argv` with a fast allocator preloaded, or with
    glibc's malloc tuned (GLIBC_TUNING) when no such library is installed.

    Skipped when either is in place already, when ASTROVADER_ALLOCATOR=system, or off Linux.
    """
    if (
        platform.system() != "Linux"
        or os.environ.get("ASTROVADER_ALLOCATOR", "") == "system"
        or os.environ.get(REEXEC_MARKER)
        or active_allocator() != "system"
    ):
        return
    library = find_allocator()
    environment = dict(os.environ)
    if library is None:
        environment.update(GLIBC_TUNING)
    else:
        environment["LD_PRELOAD"] = ":".join(filter(None, [library, environment.get("LD_PRELOAD", "")]))
    environment[REEXEC_MARKER] = "1"
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], environment)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def choose_precision(requested: str, device_type: str) -> str:
    """'bf16' or 'fp32': 'auto' takes bf16 only where the hardware runs it natively."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device_type == "cpu" and cpu_has_native_bf16() else "fp32"


def training_layout(train, cores: int | None = None) -> tuple[int, int]:
    """(processes, torch threads per process) for training on the CPU with `train`
    (config.TrainConfig): its devices and threads where set, else the rule measured by
    benchmarks/scale_throughput.py: ONE process using every core. On a 2-core AVX-512 bf16 CPU
    with tcmalloc it trains the cpu preset 1.5-1.8x faster than one thread and 1.1-1.6x faster
    than two data-parallel processes of one thread at 32, 64 and 128 px (benchmarks/README.md,
    "Layouts"); the processes' DDP all-reduce and half-size batches cost more than the threads'
    synchronisation. `cores`: torch's own thread count at the first call (its physical cores, or
    OMP_NUM_THREADS where set: a shared machine's choice), shared among the processes."""
    cores = cores or default_threads()
    processes = train.devices if isinstance(train.devices, int) else 1
    threads = train.threads if train.threads != "auto" else cores // processes
    return processes, max(1, threads)


@lru_cache(maxsize=1)
def default_threads() -> int:
    """torch's thread count before any run set it (physical cores, or OMP_NUM_THREADS)."""
    import torch

    return torch.get_num_threads()


def trains_on_cpu(train) -> bool:
    """Whether `train` (config.TrainConfig) resolves to the CPU (its accelerator, or auto without CUDA)."""
    if train.accelerator == "auto":
        import torch

        return not torch.cuda.is_available()
    return train.accelerator == "cpu"


def runtime_info(precision: str | None = None) -> dict[str, object]:
    import torch

    return {
        "allocator": active_allocator(),
        "precision": precision,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def spawn_map(function: Callable, jobs: Iterable, workers: int, initializer: Callable[[], None] | None = None) -> Iterator:
    """map(function, jobs) in order: in this process when workers <= 1, else in `workers` spawned
    processes (spawn: workers must not inherit the parent's thread pools or locks, torch's or
    OpenMP's), each first running `initializer`."""
    if workers <= 1:
        yield from map(function, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=initializer) as pool:
        yield from pool.map(function, jobs)
