"""Datasets and a seeded batching iterator: ``TensorDataset`` and ``DataLoader``.

Ordering guarantee: with ``shuffle=True`` the order of epoch ``e`` is a pure
function of ``(seed, e)`` — the same on every run and machine, and a fresh
permutation each epoch. Iterating a loader (``for x, y in loader``) uses epoch
0, then 1, 2, … on each new ``iter()``, like PyTorch re-shuffling every epoch;
``loader.iter_epoch(e)`` and ``loader.set_epoch(e)`` choose one explicitly
(used to resume a run exactly).

>>> ds = ArrayDataset(np.arange(10).reshape(5, 2), np.array([0, 0, 0, 1, 1]))
>>> loader = DataLoader(ds, batch_size=2)
>>> len(loader), [y.tolist() for _, y in loader]
(3, [[0, 0], [0, 1], [1]])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._checks import non_negative_int, positive_int

__all__ = ["ArrayDataset", "DataLoader", "random_split"]


class ArrayDataset:
    """In-memory dataset of equally long arrays, indexed together (``TensorDataset``).

    Args:
      *arrays: numpy (or JAX) arrays whose first dimensions are equal, e.g.
        images ``(N, 784)`` and labels ``(N,)``.

    >>> ds = ArrayDataset(np.zeros((3, 2)), np.array([1, 2, 3]))
    >>> len(ds), ds[1][1]
    (3, np.int64(2))
    """

    def __init__(self, *arrays: Any):
        if not arrays:
            raise ValueError("arrays: expected at least one array, got none")
        arrays = tuple(np.asarray(a) if not hasattr(a, "shape") else a for a in arrays)
        lengths = [a.shape[0] if a.ndim else None for a in arrays]
        if None in lengths:
            raise ValueError(f"arrays: every array needs a first (example) dimension, got "
                             f"shapes {[tuple(a.shape) for a in arrays]}")
        if len(set(lengths)) != 1:
            raise ValueError(f"arrays: expected equal first dimensions, got lengths {lengths}")
        self.arrays = arrays

    def __len__(self) -> int:
        return int(self.arrays[0].shape[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        return f"ArrayDataset({shapes})"


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a pure function of ``(n, seed, epoch)``.

    >>> epoch_permutation(5, seed=0, epoch=0).tolist() == epoch_permutation(5, 0, 0).tolist()
    True
    """
    # SeedSequence([seed, epoch]) gives independent, platform-stable streams.
    return np.random.default_rng([seed, epoch]).permutation(n)


class DataLoader:
    """Iterate a dataset in batches, like ``torch.utils.data.DataLoader``.

    Args:
      dataset: an ``ArrayDataset`` (or anything with ``arrays``, ``len`` and indexing).
      batch_size: examples per batch, > 0.
      shuffle: reshuffle every epoch (order = f(seed, epoch), see module docs).
      drop_last: drop the last batch if it is smaller than ``batch_size``.
      seed: integer seed of the shuffle.
      pad_last: static-shape mode for jit: the last partial batch is padded to
        ``batch_size`` (repeating example 0) and every batch gets a trailing
        boolean ``mask`` of shape ``(batch_size,)``, so ``for x, y, mask in
        loader`` and a jitted step compiles once.

    ``len(loader)`` is the number of batches: ``ceil(N / batch_size)``, or
    ``floor`` with ``drop_last``.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, pad_last: bool = False):
        self.batch_size = positive_int("batch_size", batch_size)
        if len(dataset) == 0:
            raise ValueError("dataset: expected at least one example, got an empty dataset")
        non_negative_int("seed", seed)
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"batch_size: with drop_last=True it must be <= the dataset size "
                             f"{len(dataset)}, got {batch_size} (no batch would remain)")
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.pad_last = bool(pad_last)
        self._next_epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The example indices of epoch ``epoch`` in the order they are served."""
        n = len(self.dataset)
        return epoch_permutation(n, self.seed, epoch) if self.shuffle else np.arange(n)

    def index_batches(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and mask of every batch of ``epoch``, padded to one static shape.

        Returns:
          ``(indices, mask)``, both ``(len(self), batch_size)``; ``indices`` is
          int32, ``mask`` is bool and False on padding.
        """
        order = self.order(epoch)
        n_batches, b = len(self), self.batch_size
        order = order[: n_batches * b]
        mask = np.ones(n_batches * b, dtype=bool)
        pad = n_batches * b - order.size
        if pad:
            order = np.concatenate([order, np.full(pad, order[0])])
            mask[-pad:] = False
        return order.reshape(n_batches, b).astype(np.int32), mask.reshape(n_batches, b)

    def iter_epoch(self, epoch: int) -> Iterator[tuple]:
        """Iterate the batches of epoch ``epoch`` (a pure function of seed and epoch)."""
        order = self.order(epoch)
        b = self.batch_size
        for i in range(len(self)):
            idx = order[i * b:(i + 1) * b]
            if not self.shuffle:
                idx = slice(i * b, i * b + idx.size)  # a view, not a copy
            batch = self.dataset[idx]
            if self.pad_last:
                size = len(batch[0])
                mask = np.arange(b) < size
                if size < b:
                    fill = np.zeros(b - size, dtype=np.int64)
                    batch = tuple(np.concatenate([x, np.asarray(x)[fill]]) for x in batch)
                batch = (*batch, mask)
            yield batch

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` serve epoch ``epoch`` (for resuming)."""
        self._next_epoch = non_negative_int("epoch", epoch)

    def __iter__(self) -> Iterator[tuple]:
        epoch = self._next_epoch
        self._next_epoch += 1
        return self.iter_epoch(epoch)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")


def random_split(dataset: ArrayDataset, lengths: Sequence[int | float],
                 seed: int = 0) -> list[ArrayDataset]:
    """Split a dataset into non-overlapping random parts (``torch.utils.data.random_split``).

    Args:
      dataset: the ``ArrayDataset`` to split.
      lengths: integer sizes summing to ``len(dataset)``, or fractions summing
        to 1 (the remainder goes to the first parts, like PyTorch).
      seed: integer seed; the same seed gives the same split.

    >>> train, test = random_split(ArrayDataset(np.arange(10)), [8, 2], seed=0)
    >>> len(train), len(test)
    (8, 2)
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("lengths: expected at least one length, got []")
    if all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in lengths):
        sizes = [int(x) for x in lengths]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ValueError(f"lengths: expected non-negative ints summing to the dataset size "
                             f"{n}, got {lengths} (sum {sum(sizes)})")
    elif all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0) \
            and all(0 <= x <= 1 for x in lengths):
        sizes = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
    else:
        raise ValueError(f"lengths: expected ints summing to {n} or fractions summing to 1, "
                         f"got {lengths}")
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [], 0
    for size in sizes:
        idx = order[start:start + size]
        parts.append(ArrayDataset(*(a[idx] for a in dataset.arrays)))
        start += size
    return parts
