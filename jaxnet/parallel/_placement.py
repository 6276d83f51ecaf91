"""Placement: the state replicated on every device, every batch split along its rows.

Each process feeds only the rows its own devices hold (``local_rows``), of
the same global batch order in every process. A dataset kept on the devices
for a whole run (the scan epoch's arrays) is split by rows too
(``shard_rows``): each device holds its share, never a full copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._mesh import (
    DATA_AXIS,
    check_batch_size,
    check_mesh,
    make_mesh,  # noqa: F401  # the doctests' mesh
)

__all__ = ["iter_epoch", "local_rows", "replicate", "shard_batch", "shard_rows"]


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    """``x`` (the same value in every process) as a global array with ``sharding``."""
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    value = np.asarray(x)  # each process builds the shards its own devices hold
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` (e.g. a ``TrainState``) copied onto every device of ``mesh``.

    In a multi-process run every process must pass the same values (fit makes
    sure of it with ``broadcast_from_primary``). Leaves already replicated on
    ``mesh`` are returned as they are.

    Args:
      tree: a pytree of arrays (numpy or JAX), the same values in every process.
      mesh: a mesh with a ``"data"`` axis (``make_mesh``).

    Returns:
      The pytree with every leaf a ``jax.Array`` of the same shape and dtype,
      fully replicated (``NamedSharding(mesh, P())``).

    >>> state = replicate({"w": np.ones((2, 3), np.float32)}, make_mesh(1))
    >>> state["w"].shape, state["w"].sharding.is_fully_replicated
    ((2, 3), True)
    """
    sharding = NamedSharding(check_mesh(mesh), P())
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def shard_batch(tree: Any, mesh: Mesh, *, axis: int = 0) -> Any:
    """Every leaf of ``tree`` split along ``axis`` (the batch axis) over the mesh's devices.

    Each process passes the whole global batch and places only the rows its
    devices hold (``iter_epoch`` fetches only those rows instead). ``axis=1``
    shards ``(num_batches, batch_size)`` index arrays, as the scan epoch uses.

    Args:
      tree: a pytree of arrays whose dimension ``axis`` is the global batch
        size, a multiple of the mesh's device count.
      mesh: a mesh with a ``"data"`` axis (``make_mesh``).
      axis: int, the batch axis.

    Returns:
      The pytree with every leaf a ``jax.Array`` of the same shape and dtype,
      split along ``axis`` over the ``"data"`` axis.

    >>> x, y = shard_batch((np.zeros((4, 2)), np.arange(4)), make_mesh(1))
    >>> x.shape, y.tolist(), x.sharding.spec == P(DATA_AXIS)
    ((4, 2), [0, 1, 2, 3], True)
    """
    check_mesh(mesh)
    sharding = NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))

    def put(x):
        shape = np.shape(x)
        if len(shape) <= axis:
            raise ValueError(f"batch: expected arrays with a batch axis {axis}, got shape {shape}")
        check_batch_size(shape[axis], mesh)
        return _put(x, sharding)

    return jax.tree.map(put, tree)


def shard_rows(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` (a dataset's arrays) split by rows over the mesh's devices.

    Each device holds ``ceil(N / devices)`` rows, its share, instead of a copy
    of all ``N`` (``replicate``): the memory per device falls as devices are
    added. The rows are zero-padded to a multiple of the device count; the
    padding is never indexed. A compiled gather (``jnp.take(x, idx)`` with
    ``idx`` split over the mesh) still returns each device its rows: XLA
    gathers from every device's share and adds the pieces (one all-reduce of
    the batch, not of the dataset), with the same values as from a full copy.
    In a multi-process run each process places only its own devices' rows.

    Args:
      tree: a pytree of arrays with rows along axis 0, the same values in
        every process.
      mesh: a mesh with a ``"data"`` axis (``make_mesh``).

    Returns:
      The pytree with every leaf a ``jax.Array`` of ``N`` rounded up to a
      multiple of the device count rows, sharded ``P("data")``.

    >>> x = shard_rows(np.arange(6.0).reshape(3, 2), make_mesh(1))
    >>> x.shape, x.sharding.spec == P(DATA_AXIS), x[2].tolist()
    ((3, 2), True, [4.0, 5.0])
    """
    sharding = NamedSharding(check_mesh(mesh), P(DATA_AXIS))

    def put(x):
        value = np.asarray(x)
        if value.ndim == 0:
            raise ValueError(f"data: expected arrays with rows (axis 0), got shape {value.shape}")
        n = value.shape[0]
        padded = -(-n // mesh.size) * mesh.size

        def rows(index):  # one device's share: a view of the caller's rows, zero padding
            lo, hi, _ = index[0].indices(padded)
            part = value[min(lo, n):min(hi, n)]
            if hi - lo > len(part):
                part = np.concatenate([part, np.zeros((hi - lo - len(part), *value.shape[1:]),
                                                      value.dtype)])
            return part

        return jax.make_array_from_callback((padded, *value.shape[1:]), sharding, rows)

    return jax.tree.map(put, tree)


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The rows of every global batch that this process's devices hold (all of them with
    one process).

    Args:
      mesh: a mesh from ``make_mesh`` (each process's devices one contiguous block).
      batch_size: int, the global batch size, a multiple of the device count.

    Returns:
      ``slice(lo, hi)`` into the rows of a global batch.

    >>> local_rows(make_mesh(1), 64)
    slice(0, 64, None)
    """
    check_batch_size(batch_size, check_mesh(mesh))
    index_map = NamedSharding(mesh, P(DATA_AXIS)).addressable_devices_indices_map((batch_size,))
    spans = sorted({s.indices(batch_size)[:2] for (s,) in index_map.values()})
    lo, hi = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != hi - lo:
        raise ValueError(f"mesh: the devices of process {jax.process_index()} are not one "
                         f"contiguous block of its {DATA_AXIS!r} axis; build it with "
                         f"parallel.make_mesh()")
    return slice(lo, hi)


def iter_epoch(loader, epoch: int, mesh: Mesh) -> Iterator[Any]:
    """The padded batches ``(x, y, mask)`` of ``loader``'s epoch ``epoch``, sharded over ``mesh``.

    ``DataLoader.iter_epoch(epoch, pad_last=True)`` for a mesh: the same
    global batches in the same order (a pure function of the seed and the
    epoch). With several processes each one fetches and collates only the
    rows of each batch that its devices hold
    (``jax.make_array_from_process_local_data``).

    Args:
      loader: a ``jaxnet.data.DataLoader`` whose ``batch_size`` is a multiple
        of the mesh's device count.
      epoch: int, the epoch (from 0) whose order to use.
      mesh: a mesh from ``make_mesh``.

    Yields:
      ``(x, y, mask)`` global ``jax.Array`` s of ``batch_size`` rows each,
      sharded along their first axis; ``mask`` is bool, False on padding.

    >>> from jaxnet.data import ArrayDataset, DataLoader
    >>> loader = DataLoader(ArrayDataset(np.zeros((5, 2), np.float32), np.arange(5)),
    ...                     batch_size=4)
    >>> [(x.shape, m.tolist()) for x, y, m in iter_epoch(loader, 0, make_mesh(1))]
    [((4, 2), [True, True, True, True]), ((4, 2), [True, False, False, False])]
    """
    batch_size = check_batch_size(loader.batch_size, check_mesh(mesh))
    # A dataset smaller than the batch is served whole (never batch_size rows): its batch
    # is padded (masked) up to a multiple of the devices, as Batches pads its index columns.
    width = min(batch_size, len(loader.dataset))
    batch_size = -(-width // mesh.size) * mesh.size
    rows = local_rows(mesh, batch_size)
    if rows == slice(0, batch_size) and width == batch_size:  # one process feeds every row
        for batch in loader.iter_epoch(epoch, pad_last=True):
            yield shard_batch(batch, mesh)
        return
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    indices, mask = loader.index_batches(epoch)
    if width < batch_size:
        indices = np.pad(indices, ((0, 0), (0, batch_size - width)))
        mask = np.pad(mask, ((0, 0), (0, batch_size - width)))
    for i in range(len(indices)):
        local = (*loader.fetch(indices[i, rows]), mask[i, rows])
        yield jax.tree.map(lambda a: jax.make_array_from_process_local_data(
            sharding, np.asarray(a), (batch_size, *np.shape(a)[1:])), local)
