"""Processes: which one is primary, process 0's values in every process, and a lost peer
named as such.

Process 0 alone logs, shows progress and reads and writes checkpoints; the
others get its state by ``broadcast_from_primary``, like rank 0 in PyTorch.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from ._errors import DistributedError
from ._mesh import make_mesh  # noqa: F401  # the doctests' mesh
from ._placement import replicate

__all__ = ["broadcast_from_primary", "is_primary", "peer_failures", "start_from_primary"]

# Words in XLA's and the coordination service's messages when another process is gone.
_LOST = ("Gloo", "Connection closed", "Connection reset", "heartbeat", "coordination service",
         "DEADLINE_EXCEEDED")


def is_primary() -> bool:
    """True in process 0, the one that logs and checkpoints (always True with one process).

    Returns:
      bool, ``jax.process_index() == 0``.

    >>> is_primary()
    True
    """
    return jax.process_index() == 0


def broadcast_from_primary(tree: Any) -> Any:
    """Process 0's values of ``tree`` in every process, bit for bit (numpy leaves).

    Every process must pass a tree of the same structure, shapes and dtypes.
    The bytes are sent, not the numbers, so -0.0, NaN payloads and integer
    keys arrive unchanged. With one process ``tree`` is returned as it is.

    Args:
      tree: a pytree of arrays, the same structure, shapes and dtypes in
        every process.

    Returns:
      With several processes, a pytree of numpy arrays of the same shapes and
      dtypes holding process 0's values; with one process, ``tree`` itself.

    The one-process case (every process of a run calls it the same way):

    >>> tree = {"w": np.arange(3)}
    >>> broadcast_from_primary(tree) is tree
    True
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(tree)
    host = [np.asarray(x) for x in leaves]
    raw = multihost_utils.broadcast_one_to_all(
        [np.ascontiguousarray(h).reshape(-1).view(np.uint8) for h in host])
    return jax.tree.unflatten(treedef, [np.asarray(r).view(h.dtype).reshape(h.shape)
                                        for r, h in zip(raw, host, strict=True)])


def _broadcast_json(value: Any) -> Any:
    """Process 0's JSON-able ``value`` in every process."""
    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_primary() else None
    size = int(broadcast_from_primary(np.int32(0 if data is None else data.size)))
    buffer = np.zeros(size, np.uint8) if data is None else data
    return json.loads(bytes(broadcast_from_primary(buffer)))


def start_from_primary(mesh: Mesh, state: Any, start_epoch: int, history: list
                       ) -> tuple[Any, int, list]:
    """``fit``'s starting point on ``mesh``: process 0's (possibly resumed) state,
    replicated, with its epoch and history, in every process.

    Args:
      state: a pytree of arrays (a ``TrainState``), same structure in every process.
      start_epoch: int, the last finished epoch (0 for a new run).
      history: list of JSON-able per-epoch dicts.

    Returns:
      ``(state, start_epoch, history)``: process 0's values (every process's
      own with one process), the state replicated on ``mesh``.

    The one-process case:

    >>> state, epoch, history = start_from_primary(make_mesh(1), {"w": np.ones(2)}, 3,
    ...                                            [{"epoch": 3}])
    >>> state["w"].sharding.is_fully_replicated, epoch, history
    (True, 3, [{'epoch': 3}])
    """
    if jax.process_count() > 1:
        state = broadcast_from_primary(state)
        start_epoch, history = _broadcast_json([start_epoch, history])
    return replicate(state, mesh), start_epoch, history


@contextlib.contextmanager
def peer_failures() -> Iterator[None]:
    """Inside, a collective or coordination failure of a multi-process run becomes a
    ``DistributedError`` saying that another process stopped (XLA's own message is
    kept in parentheses).

    Yields:
      Nothing: a context manager for the code that runs collectives.

    A peer's failure can only happen with several processes; with one, any
    error passes through unchanged:

    >>> with peer_failures():
    ...     raise ValueError("batch: bad shape")
    Traceback (most recent call last):
    ...
    ValueError: batch: bad shape
    """
    try:
        yield
    except (RuntimeError, ValueError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, DistributedError) or jax.process_count() == 1 \
                or not any(s in text for s in _LOST):
            raise
        raise DistributedError(
            f"process {jax.process_index()} of {jax.process_count()}: another process of this "
            f"run stopped or cannot be reached ({text[:300]}); restart all the processes (a "
            f"run with checkpoints continues from its last one with --resume / "
            f"resume=True)") from e
