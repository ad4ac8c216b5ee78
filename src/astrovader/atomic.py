"""Atomic file writes: a reader never sees a half-written file, and a kill leaves none."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        # The usual permissions: mkstemp made the file 0600, and a writer may have replaced it
        # with a file of its own (safetensors does), so they are set after the writer.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_with(path: Path, writer: Callable[[Path], Any]) -> Path:
    """Call `writer(temporary_path)` and move the result into place atomically."""
    with atomic_path(path) as temporary:
        writer(temporary)
    return Path(path)


def write_text_atomic(path: Path, text: str) -> Path:
    return write_with(path, lambda temporary: temporary.write_text(text))


def write_json_atomic(path: Path, value: Any) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
