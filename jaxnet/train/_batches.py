"""The one source of padded batches: any ``DataLoader``, on one device or split over a mesh.

The same batches in two forms, for the two ways an epoch runs:

* device-resident: an array dataset's ``(x, y)`` placed on the device(s) once
  (``arrays``) and each epoch's ``(num_batches, batch)`` indices and mask
  (``index_batches``), for a ``lax.scan`` that gathers its own rows;
* host batches: padded ``(x, y, mask)`` batches fetched from any dataset
  (``host_batches``), for a Python loop over the jitted step.

With a mesh, the state is replicated on every device, the arrays are split
by rows (each device holds its share of the dataset, ``shard_rows``) and
every batch (or its indices) is split over the devices along the batch axis.
``as_loader`` turns what a user passes — ``(x, y)`` arrays, a ``Dataset``, a
``DataLoader`` — into the ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from .. import parallel
from ..data import ArrayDataset, DataLoader
from ..parallel._placement import shard_rows


def _pair(arrays: tuple, name: str) -> tuple:
    if len(arrays) != 2:
        raise ValueError(f"{name}: expected examples (x, y), got {len(arrays)} arrays per example")
    return arrays


@dataclass(frozen=True)
class Batches:
    """The padded batches of ``loader``, placed for ``mesh`` (or the default device).

    Attributes:
      loader: the ``DataLoader`` (its order, batch size and ``drop_last``).
      mesh: optional ``jax.sharding.Mesh``; batches are split over its devices.
      name: the argument named in error messages (``"train_data"``, ``"data"``).

    >>> loader = DataLoader(ArrayDataset(np.zeros((5, 2)), np.zeros(5)), batch_size=2)
    >>> batches = Batches(loader)
    >>> indices, mask, counts = batches.index_batches(0)
    >>> indices.shape, counts.tolist(), batches.on_device
    ((3, 2), [2, 2, 1], True)
    >>> [m.tolist() for _, _, m in batches.host_batches(0)]
    [[True, True], [True, True], [True, False]]
    """

    loader: DataLoader
    mesh: Any = None
    name: str = "train_data"

    @property
    def on_device(self) -> bool:
        """Whether the dataset is arrays, which can be device-resident for a scan."""
        return self.loader.arrays is not None

    def place(self, tree):
        """``tree`` (a state, parameters) replicated over the mesh; as is without one."""
        return tree if self.mesh is None else parallel.replicate(tree, self.mesh)

    def arrays(self) -> tuple[jax.Array, jax.Array]:
        """The dataset's ``(x, y)`` arrays on the device (over a mesh: each device its rows,
        zero-padded to a multiple of the device count; the indices never reach the padding)."""
        x_y = _pair(self.loader.arrays, self.name)
        if self.mesh is None:
            return tuple(jax.device_put(a) for a in x_y)
        return shard_rows(x_y, self.mesh)

    def index_batches(self, epoch: int) -> tuple[Any, Any, np.ndarray]:
        """Epoch ``epoch``'s ``(indices, mask)``, split over the mesh, and the real rows per batch.

        Returns:
          ``indices`` int32 and ``mask`` bool, both ``(num_batches, batch)``,
          and ``counts``, a numpy ``(num_batches,)`` of the unpadded rows.
        """
        indices, mask = self.loader.index_batches(epoch)
        counts = mask.sum(axis=1)
        if self.mesh is not None:
            # a dataset smaller than the batch gives N columns: pad them (masked) to the devices
            pad = -indices.shape[1] % self.mesh.size
            if pad:
                indices = np.pad(indices, ((0, 0), (0, pad)))
                mask = np.pad(mask, ((0, 0), (0, pad)))
            indices, mask = parallel.shard_batch((indices, mask), self.mesh, axis=1)
        return indices, mask, counts

    def counts(self, epoch: int) -> np.ndarray:
        """The real (unpadded) rows of each batch of epoch ``epoch``, a numpy int array."""
        return self.loader.index_batches(epoch)[1].sum(axis=1)

    def host_batches(self, epoch: int) -> Iterator[tuple]:
        """Epoch ``epoch``'s padded ``(x, y, mask)`` batches, each split over the mesh."""
        batches = (self.loader.iter_epoch(epoch, pad_last=True) if self.mesh is None
                   else parallel.iter_epoch(self.loader, epoch, self.mesh))
        for batch in batches:
            if len(batch) != 3:
                raise ValueError(f"{self.name}: expected dataset examples (x, y), got "
                                 f"batches of {len(batch) - 1} values")
            yield batch


def as_loader(data, name: str, *, batch_size=None, shuffle=None, seed=None,
              defaults=(64, True, 0), round_to: int = 1) -> DataLoader:
    """A DataLoader for ``data``: ``(x, y)`` arrays, a dataset, or a DataLoader as is.

    ``round_to``: a batch size that this function chooses (not one given) is
    rounded up to a multiple of it (the devices of a mesh; padding is masked).
    """
    given = {k: v for k, v in (("batch_size", batch_size), ("shuffle", shuffle), ("seed", seed))
             if v is not None}
    if isinstance(data, DataLoader):
        if given:
            raise ValueError(f"{', '.join(given)}: {name} is a DataLoader, which already sets "
                             f"them (DataLoader(dataset, batch_size=..., shuffle=..., seed=...)); "
                             f"pass them to the DataLoader, not here")
        return data
    if isinstance(data, tuple | list):
        if len(data) != 2:
            raise TypeError(f"{name}: expected (x, y) arrays, a Dataset or a DataLoader, got a "
                            f"{type(data).__name__} of {len(data)}")
        data = ArrayDataset(*data)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(f"{name}: expected (x, y) arrays, a Dataset or a DataLoader, got "
                        f"{type(data).__name__}")
    b, s, sd = defaults
    if "batch_size" in given:  # kept as given: a smaller dataset is served whole, as PyTorch
        b = given["batch_size"]
    else:
        b = -(-min(b, len(data)) // round_to) * round_to
    return DataLoader(data, batch_size=b, shuffle=given.get("shuffle", s),
                      seed=given.get("seed", sd))
