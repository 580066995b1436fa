"""Which images each rank predicts, in which batches: every image once, and a resumed run's batches
exactly an uninterrupted run's."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset, DistributedSampler


def scheduled_indices(names: Sequence[str], skip: frozenset[str], world_size: int, rank: int, batch_size: int) -> list[int]:
    """The images rank ``rank`` of ``world_size`` predicts: ``rank, rank + n, rank + 2n, ...`` (each image
    once, no padding), less the batches in which an earlier run finished every image.

    A batch with anything left to do is predicted whole, so a resumed run's batches are an
    uninterrupted run's batches and its maps the same bits (a map can differ in the last bits with
    the batch size it was computed in); the writer does not write the images finished before.
    Cut into ``batch_size`` pieces, the indices give back exactly those batches: all but the last
    batch of a rank are full.

    Example:
        >>> names = ["a", "b", "c", "d", "e"]
        >>> scheduled_indices(names, frozenset(), 2, 1, 2)
        [1, 3]
        >>> scheduled_indices(names, frozenset({"a", "b", "d"}), 1, 0, 2)  # [a b] done, [c d] has c left
        [2, 3, 4]
    """
    mine = list(range(rank, len(names), world_size))
    if not skip:
        return mine
    kept: list[int] = []
    for start in range(0, len(mine), batch_size):
        batch = mine[start:start + batch_size]
        if any(names[index] not in skip for index in batch):
            kept += batch
    return kept


class FolderShardSampler(DistributedSampler):
    """Yields the indices :func:`scheduled_indices` gives one rank (all of its images by default).

    Lightning's own predict sampler asserts that every rank gets at least one image; this one
    lets a rank get none (1 image on 2 GPUs), and its loader is then simply empty.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, indices: Sequence[int] | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.indices = list(indices) if indices is not None else list(range(rank, len(dataset), num_replicas))
        self.num_samples = len(self.indices)
        self.total_size = len(dataset)

    def __iter__(self):  # noqa: ANN204
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples
