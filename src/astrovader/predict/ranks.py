"""This process among the torch.distributed processes of a prediction (or alone)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import torch.distributed as dist

# Rank 0 may assemble a FITS/CSV file while the others wait for it.
GROUP_TIMEOUT = timedelta(hours=12)


class Ranks:
    """This process among the torch.distributed processes (torchrun sets RANK, WORLD_SIZE,
    MASTER_ADDR/PORT), or alone. Only small objects are exchanged, so gloo serves CPU and GPU
    runs alike; a group initialised by the caller is used as it is."""

    def __init__(self):
        self.started = (
            dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1
        )
        if self.started:
            dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.size = dist.get_world_size() if self.active else 1

    def from_rank_0(self, make: Callable[[], object]):
        """make() run on rank 0 and its result on every rank (a collective: all ranks wait)."""
        box = [make() if self.rank == 0 else None]
        if self.active:
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value) -> list:
        if not self.active:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self.started:
            dist.destroy_process_group()
