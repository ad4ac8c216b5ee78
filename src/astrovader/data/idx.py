"""IDX files (MNIST, Fashion-MNIST), gzipped or not, read from a given path (never downloaded)."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np

from astrovader.errors import InputError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: Path):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_idx(path: str | Path, header_only: bool = False):
    """The array stored in an IDX file; with `header_only`, just its shape."""
    path = Path(path)
    try:
        with _open(path) as handle:
            magic = handle.read(4)
            if len(magic) != 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _DTYPES:
                raise InputError(f"{path}: not an IDX file (bad magic number)")
            dims = magic[3]
            shape = tuple(int.from_bytes(handle.read(4), "big") for _ in range(dims))
            if header_only:
                return shape
            dtype = np.dtype(_DTYPES[magic[2]])
            data = handle.read()
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: cannot read IDX file ({error})") from None
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise InputError(f"{path}: IDX body has {len(data)} bytes, header says {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


@lru_cache(maxsize=4)
def cached_idx(path: str) -> np.ndarray:
    """Whole-file cache so that decoding one row of a stack does not re-read the file."""
    return read_idx(path)


def find_idx_pair(folder: Path, split: str = "train") -> tuple[Path, Path | None] | None:
    """The images file of `split` (train / t10k) in a folder, and its labels file if present."""
    for prefix in (split, "t10k" if split == "test" else split):
        images = sorted(folder.glob(f"{prefix}-images-idx3-ubyte*"))
        if images:
            labels = sorted(folder.glob(f"{prefix}-labels-idx1-ubyte*"))
            return images[0], (labels[0] if labels else None)
    return None


def load_idx_dataset(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W uint8, labels N) of an MNIST-style folder; split 'train' or 'test'."""
    folder = Path(folder)
    pair = find_idx_pair(folder, split)
    if pair is None or pair[1] is None:
        raise InputError(f"{folder}: no {split} images and labels IDX files")
    images, labels = read_idx(pair[0]), read_idx(pair[1])
    if len(images) != len(labels):
        raise InputError(f"{folder}: {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)
