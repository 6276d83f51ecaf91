"""Datasets and a seeded batching iterator: ``Dataset``, ``TensorDataset`` and ``DataLoader``.

A dataset is anything map-style — ``__getitem__(i)`` returns one example and
``__len__`` the number of examples — exactly like PyTorch's; subclass
``Dataset`` for your own. ``ArrayDataset`` (``TensorDataset``) holds
in-memory arrays; ``fit`` runs it as one compiled scan per epoch.

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._checks import non_negative_int, positive_int, seed_int
from ._collate import default_collate as default_collate

__all__ = ["ArrayDataset", "DataLoader", "Dataset", "Subset", "TensorDataset", "default_collate",
           "random_split"]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)


class Dataset:
    """Base class of map-style datasets (``torch.utils.data.Dataset``).

    Subclass it and define ``__getitem__(self, index)`` (one example, e.g. a
    tuple ``(x, y)`` of arrays or numbers) and ``__len__(self)``.

    >>> class Squares(Dataset):
    ...     def __init__(self, n):
    ...         self.x = np.arange(n, dtype=np.float32)
    ...     def __getitem__(self, index):
    ...         return self.x[index], self.x[index] ** 2
    ...     def __len__(self):
    ...         return len(self.x)
    >>> next(iter(DataLoader(Squares(5), batch_size=3)))[1].tolist()
    [0.0, 1.0, 4.0]
    """

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(self, index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__(self)")


class ArrayDataset(Dataset):
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

    @property
    def tensors(self) -> tuple:
        """The arrays, as PyTorch's ``TensorDataset.tensors`` (the same as ``arrays``)."""
        return self.arrays

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        return f"ArrayDataset({shapes})"


TensorDataset = ArrayDataset  # PyTorch's name: from jaxnet.data import TensorDataset


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a pure function of ``(n, seed, epoch)``.

    >>> epoch_permutation(5, seed=0, epoch=0).tolist() == epoch_permutation(5, 0, 0).tolist()
    True
    """
    # SeedSequence([seed, epoch]) gives independent, platform-stable streams.
    return np.random.default_rng([seed, epoch]).permutation(n)


class Subset(Dataset):
    """The examples of ``dataset`` at ``indices``, in that order (``torch.utils.data.Subset``).

    Args:
      dataset: any map-style dataset (``__getitem__(i)``, ``__len__``).
      indices: sequence of ``int`` positions in ``dataset`` (stored as an
        int64 array of shape ``(len(indices),)``); ``subset[i]`` is
        ``dataset[indices[i]]``.

    >>> sub = Subset(ArrayDataset(np.arange(10) * 10), [7, 2])
    >>> len(sub), int(sub[0][0]), int(sub[1][0])
    (2, 70, 20)
    """

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def __len__(self) -> int:
        return int(self.indices.size)


class DataLoader:
    """Iterate a dataset in batches, like ``torch.utils.data.DataLoader``.

    Args:
      dataset: any map-style dataset (``__getitem__(i)``, ``__len__``): an
        ``ArrayDataset``, your own ``Dataset`` subclass, a ``Subset``…
      batch_size: examples per batch, > 0.
      shuffle: reshuffle every epoch (order = f(seed, epoch), see module docs).
      drop_last: drop the last batch if it is smaller than ``batch_size``.
      seed: integer seed of the shuffle, in [0, 2**32).
      pad_last: static-shape mode for jit: the last partial batch is padded to
        ``batch_size`` (repeating the epoch's first example) and every batch
        gets a trailing boolean ``mask`` of shape ``(batch_size,)``, so ``for
        x, y, mask in loader`` and a jitted step compiles once. A dataset
        smaller than ``batch_size`` is one batch of all its examples, unpadded.
      collate_fn: turns a list of examples into a batch; default
        ``default_collate`` (numpy arrays). An ``ArrayDataset`` without a
        ``collate_fn`` is sliced directly (no per-example work).
      num_workers: 0 fetches batches in the calling thread. ``N > 0`` fetches
        and collates up to ``N * prefetch_factor`` batches ahead in ``N``
        threads (not processes: nothing is pickled), in the same order. It
        helps when ``__getitem__`` waits on files or releases the GIL (numpy
        work); pure-Python per-item work gains nothing. ``__getitem__`` must
        then be thread-safe.
      prefetch_factor: batches fetched ahead per worker (with ``num_workers > 0``).

    ``len(loader)`` is the number of batches: ``ceil(N / batch_size)``, or
    ``floor`` with ``drop_last``. Each batch is what ``collate_fn`` returns; for
    an ``ArrayDataset`` of arrays ``(N, *S_i)`` it is a tuple of arrays
    ``(batch_size, *S_i)`` (fewer rows in a last partial batch), plus the
    ``(batch_size,)`` bool mask with ``pad_last``.

    >>> ds = ArrayDataset(np.arange(5, dtype=np.float32), np.arange(5))
    >>> loader = DataLoader(ds, batch_size=2, shuffle=True, seed=0)
    >>> len(loader), [y.shape for _, y in loader]
    (3, [(2,), (2,), (1,)])
    >>> sorted(np.concatenate([y for _, y in loader.iter_epoch(1)]).tolist())
    [0, 1, 2, 3, 4]
    >>> x, y, mask = list(DataLoader(ds, batch_size=2, pad_last=True))[-1]
    >>> x.shape, mask.tolist()
    ((2,), [True, False])
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, pad_last: bool = False,
                 collate_fn: Callable[[list], Any] | None = None, num_workers: int = 0,
                 prefetch_factor: int = 2):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(f"dataset: expected a map-style dataset with __getitem__ and "
                            f"__len__ (e.g. a Dataset subclass), got {type(dataset).__name__}")
        self.batch_size = positive_int("batch_size", batch_size)
        if len(dataset) == 0:
            raise ValueError("dataset: expected at least one example, got an empty dataset")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"batch_size: with drop_last=True it must be <= the dataset size "
                             f"{len(dataset)}, got {batch_size} (no batch would remain)")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn: expected a function, got {type(collate_fn).__name__}")
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed_int("seed", seed)
        self.pad_last = bool(pad_last)
        self.collate_fn = collate_fn
        self.num_workers = non_negative_int("num_workers", num_workers)
        self.prefetch_factor = positive_int("prefetch_factor", prefetch_factor)
        self._next_epoch = 0

    @property
    def arrays(self) -> tuple | None:
        """The dataset's arrays when batches are plain slices of them (the scan fast path)."""
        if self.collate_fn is None and isinstance(self.dataset, ArrayDataset):
            return self.dataset.arrays
        return None

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
          ``(indices, mask)``, both ``(len(self), B)`` with ``B =
          min(batch_size, len(dataset))``; ``indices`` is int32, ``mask`` is
          bool and False on padding.
        """
        order = self.order(epoch)
        # batch_size > N serves the N rows, as PyTorch; never allocate batch_size rows
        n_batches, b = len(self), min(self.batch_size, order.size)
        order = order[: n_batches * b]
        mask = np.ones(n_batches * b, dtype=bool)
        pad = n_batches * b - order.size
        if pad:
            order = np.concatenate([order, np.full(pad, order[0])])
            mask[-pad:] = False
        return order.reshape(n_batches, b).astype(np.int32), mask.reshape(n_batches, b)

    def fetch(self, indices: np.ndarray) -> Any:
        """The batch of the examples at ``indices`` (sliced, or fetched one by one and collated)."""
        arrays = self.arrays
        if arrays is not None:
            return tuple(a[indices] for a in arrays)
        collate = self.collate_fn or default_collate
        return collate([self.dataset[int(i)] for i in indices])

    def iter_epoch(self, epoch: int, *, pad_last: bool | None = None) -> Iterator[Any]:
        """Iterate the batches of epoch ``epoch`` (a pure function of seed and epoch).

        ``pad_last`` overrides the loader's setting for this iteration (``fit``
        and ``evaluate`` always pad, so their jitted step sees one shape).
        """
        pad = self.pad_last if pad_last is None else pad_last
        indices, mask = self.index_batches(non_negative_int("epoch", epoch))

        def batch(i: int):
            rows = indices[i] if pad else indices[i][mask[i]]
            data = self.fetch(rows)
            if not pad:
                return data
            if not isinstance(data, tuple):
                raise TypeError(f"pad_last: batches must be tuples such as (x, y) to carry a "
                                f"mask, got {type(data).__name__}; return a tuple from "
                                f"__getitem__ (or from collate_fn)")
            return (*data, mask[i])

        if self.num_workers == 0:
            for i in range(len(indices)):
                yield batch(i)
            return
        ahead = self.num_workers * self.prefetch_factor
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="jaxnet-loader") as pool:
            pending = [pool.submit(batch, i) for i in range(min(ahead, len(indices)))]
            try:
                for i in range(len(indices)):
                    if i + ahead < len(indices):
                        pending.append(pool.submit(batch, i + ahead))
                    yield pending[i].result()
                    pending[i] = None  # free the batch
            finally:
                for future in pending:
                    if future is not None:
                        future.cancel()

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(loader)`` serve epoch ``epoch`` (for resuming)."""
        self._next_epoch = non_negative_int("epoch", epoch)

    def __iter__(self) -> Iterator[Any]:
        epoch = self._next_epoch
        self._next_epoch += 1
        return self.iter_epoch(epoch)

    def __repr__(self) -> str:
        return (f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
                f"num_workers={self.num_workers})")


def random_split(dataset, lengths: Sequence[int | float], seed: int = 0) -> list:
    """Split a dataset into non-overlapping random parts (``torch.utils.data.random_split``).

    Args:
      dataset: the dataset to split: an ``ArrayDataset`` gives ``ArrayDataset``
        parts (still on the fast path), any other dataset ``Subset`` parts.
      lengths: integer sizes summing to ``len(dataset)``, or fractions summing
        to 1 (the remainder goes to the first parts, like PyTorch).
      seed: integer seed; the same seed gives the same split.

    Returns:
      A list of ``len(lengths)`` datasets (``ArrayDataset`` or ``Subset``),
      whose sizes are the resolved ``lengths``.

    >>> parts = random_split(ArrayDataset(np.arange(10)), [0.5, 0.5], seed=1)
    >>> [len(p) for p in parts]
    [5, 5]
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
    order = np.random.default_rng(seed_int("seed", seed)).permutation(n)
    parts, start = [], 0
    for size in sizes:
        idx = order[start:start + size]
        if isinstance(dataset, ArrayDataset):
            parts.append(ArrayDataset(*(a[idx] for a in dataset.arrays)))
        else:
            parts.append(Subset(dataset, idx))
        start += size
    return parts
