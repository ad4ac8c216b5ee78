"""The hardware this runs on, and the speed settings measured on CPUs before any code (METHOD.md),
chosen for it automatically.

- A faster allocator (tcmalloc / jemalloc) makes the same PyTorch code 1.1-2.4x faster:
  the launcher re-executes itself with LD_PRELOAD when the system has one.
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
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_allocator() -> str | None:
    for directory in _LIBRARY_DIRS:
        for name in ALLOCATORS:
            candidate = Path(directory) / name
            if candidate.exists():
                return str(candidate)
    return None


def active_allocator() -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc"):
        if name in preload:
            return name
    return "system"


def reexec_with_allocator(argv: list[str]) -> None:
    """Replace this process by the same command with a fast allocator preloaded, if possible.

    Skipped when one is already loaded, when ASTROVADER_ALLOCATOR=system, on non-Linux, or
    when no library is installed (it is never required).
    """
    if (
        platform.system() != "Linux"
        or os.environ.get("ASTROVADER_ALLOCATOR", "") == "system"
        or os.environ.get(REEXEC_MARKER)
        or active_allocator() != "system"
    ):
        return
    library = find_allocator()
    if library is None:
        return
    environment = dict(os.environ)
    environment["LD_PRELOAD"] = ":".join(filter(None, [library, environment.get("LD_PRELOAD", "")]))
    environment[REEXEC_MARKER] = "1"
    os.execve(sys.executable, [sys.executable, "-m", "astrovader", *argv], environment)


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
