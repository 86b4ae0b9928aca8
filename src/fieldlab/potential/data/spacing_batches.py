"""Batches of one spacing each, for training across resolutions: every sample once per epoch, seeded order.

A batch stacks samples on one grid, so a corpus of two spacings (the base grid and the fine limbs of ``train_2x/``)
is batched per spacing: the samples of each spacing are shuffled and cut into batches, and the batches of all
spacings are shuffled together. The order depends only on the seed and the epoch (:meth:`set_epoch`, as
``DistributedSampler``), so a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from fieldlab.errors import InputError

#: Decimals of a spacing (metres) that tell two grids apart (0.1 um).
SPACING_DECIMALS = 7


def spacing_key(spacing: Sequence[float]) -> tuple[float, float, float]:
    """``(dx, dy, dz)`` rounded to :data:`SPACING_DECIMALS`, so that float noise never splits one grid in two."""
    key = tuple(round(float(v), SPACING_DECIMALS) for v in spacing)
    if len(key) != 3 or min(key) <= 0:
        raise InputError(f"spacing = {list(spacing)}: expected three positive lengths (dx, dy, dz) in metres")
    return key  # type: ignore[return-value]


class SpacingBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler (``DataLoader(ds, batch_sampler=...)``) whose every batch holds samples of one spacing.

    Parameters
    ----------
    spacings
        ``(dx, dy, dz)`` of each sample of the dataset, in its order.
    batch_size
        Samples per batch; the last batch of a spacing may be smaller unless ``drop_last``.
    seed
        Seeds the shuffle (with the epoch).
    shuffle
        ``False``: the samples of each spacing in dataset order, the spacings in order of first appearance.
    drop_last
        Leave out the incomplete last batch of each spacing.
    rank, world_size
        Under DDP each rank takes every ``world_size``-th batch of the epoch's order from ``rank`` on; the order is
        cut to a multiple of ``world_size`` so that every rank steps the same number of times.

    Examples
    --------
    >>> s = SpacingBatchSampler([(2e-3,) * 3, (1e-3,) * 3, (2e-3,) * 3], batch_size=2, shuffle=False)
    >>> list(s)
    [[0, 2], [1]]
    """

    def __init__(
        self,
        spacings: Sequence[Sequence[float]],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size = {batch_size}: expected at least 1")
        if not 0 <= rank < world_size:
            raise InputError(f"rank = {rank} of world_size = {world_size}: expected 0 <= rank < world_size")
        self.rank, self.world_size = rank, world_size
        self.groups: dict[tuple[float, float, float], list[int]] = {}
        for i, spacing in enumerate(spacings):
            self.groups.setdefault(spacing_key(spacing), []).append(i)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order :meth:`__iter__` gives next."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches of this rank, in order."""
        out = self.all_batches()
        out = out[: len(out) - len(out) % self.world_size]
        return out[self.rank :: self.world_size]

    def all_batches(self) -> list[list[int]]:
        """This epoch's batches of every rank, in order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        out: list[list[int]] = []
        for members in self.groups.values():
            order = [members[k] for k in torch.randperm(len(members), generator=g)] if self.shuffle else members
            for lo in range(0, len(order), self.batch_size):
                batch = order[lo : lo + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    out.append(batch)
        if self.shuffle:
            out = [out[k] for k in torch.randperm(len(out), generator=g)]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = self.batch_size
        total = sum(len(m) // n if self.drop_last else -(-len(m) // n) for m in self.groups.values())
        return total // self.world_size
