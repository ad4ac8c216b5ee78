"""Batches from the cache: whole batches read from the memory map, flips applied on the fly.

The order and the flips of an epoch are a pure function of (seed, epoch, rank), so an
interrupted run that restarts an epoch sees exactly the same batches, and each rank of a
data-parallel run reads its own disjoint share.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from astrovader.config import DataConfig
from astrovader.errors import InputError

AUGMENTATIONS = ("flips", "flips+rot90", "rotations", "none")


def to_float(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Pixels -> float32 tensor in [0, 1]: uint8 (the cache's) divided by 255, floats taken as
    they are; arrays and tensors alike."""
    if not isinstance(pixels, torch.Tensor):
        pixels = np.ascontiguousarray(pixels)
        if not pixels.flags.writeable:  # e.g. IDX arrays read from a buffer: torch wants its own copy
            pixels = pixels.copy()
        pixels = torch.from_numpy(pixels)
    return pixels.float().div_(255.0) if pixels.dtype == torch.uint8 else pixels.float()


def check_pixels(array, settings: DataConfig, what: str = "input") -> np.ndarray:
    """Pixels (N, C, H, W) at the model's `input_shape` from an array (N, H, W) or (N, C, H, W)
    (a gray stack gains its band axis); any other shape is an InputError naming `what`."""
    pixels = np.asarray(array)
    if pixels.ndim == 3:
        pixels = pixels[:, None]
    expected = settings.input_shape
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
        raise InputError(f"{what} of shape {np.shape(array)}: expected (N, {', '.join(map(str, expected))}) pixels")
    return pixels


def augment(batch: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips per image (the paper's), optionally 90-degree turns
    or turns by any angle."""
    if mode == "none":
        return batch
    count = batch.shape[0]
    flips = torch.rand((count, 2), generator=generator) < 0.5
    batch = torch.where(flips[:, 0, None, None, None], batch.flip(-1), batch)
    batch = torch.where(flips[:, 1, None, None, None], batch.flip(-2), batch)
    if mode == "flips+rot90":
        turn = torch.rand(count, generator=generator) < 0.5
        batch = torch.where(turn[:, None, None, None], batch.transpose(-1, -2), batch)
    if mode == "rotations":
        batch = rotate(batch, torch.rand(count, generator=generator) * (2 * torch.pi))
    return batch


def rotate(batch: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Each image turned about its centre by its angle (radians), bilinear; what comes in at the
    corners is the image's own edge reflected, so no black wedges appear."""
    cos, sin = angles.cos(), angles.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
    return torch.nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection",
                                           align_corners=False)


class EpochBatches(Dataset):
    """Item i is batch i of the current epoch (call `set_epoch` before each epoch).

    `images` is any array indexable by a sorted row list (the cache's memory map, or an
    in-memory array); `rows` are the rows this data set draws from.
    """

    def __init__(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        augmentation: str = "flips",
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation {augmentation!r} not in {AUGMENTATIONS}")
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_rows(self) -> np.ndarray:
        rows = self.rows
        if self.shuffle:
            rows = rows[np.random.default_rng([self.seed, self.epoch]).permutation(len(rows))]
        # Each rank takes every world_size-th row: disjoint shares of (almost) equal size.
        return rows[self.rank :: self.world_size]

    def __len__(self) -> int:
        count = len(range(self.rank, len(self.rows), self.world_size))
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rows = self._epoch_rows()[index * self.batch_size : (index + 1) * self.batch_size]
        batch = to_float(read_rows(self.images, rows))
        generator = torch.Generator().manual_seed(seed_for(self.seed, self.epoch, self.rank, index))
        return augment(batch, self.augmentation if self.shuffle else "none", generator)


def evenly_spread(rows: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` of `rows`, evenly spread over them (so a measurement's cost stays bounded)."""
    if len(rows) <= limit:
        return rows
    return rows[np.linspace(0, len(rows) - 1, limit).round().astype(int)]


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """images[rows] with the reads in ascending row order (sequential on a memory map)."""
    rows = np.asarray(rows)
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    out[order] = images[rows[order]]
    return out


def seed_for(*numbers: int) -> int:
    """A 63-bit seed mixed from integers (run seed, epoch, rank, batch, ...)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, dtype=np.uint64)[0] >> 1)
