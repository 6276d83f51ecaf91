"""The mesh: one ``"data"`` axis over the devices of every process, and the batch sizes it splits.

>>> mesh = make_mesh(1)
>>> mesh.axis_names, mesh.size
(('data',), 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from .._checks import positive_int

__all__ = ["DATA_AXIS", "check_batch_size", "check_mesh", "describe", "make_mesh"]

DATA_AXIS = "data"


def _devices_by_process() -> list:
    """Every device of every process, grouped by process, so that each process's devices
    are one contiguous block of the ``"data"`` axis (it then feeds one block of rows)."""
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def _first_devices(n: int) -> list:
    """``n`` devices in all, the first ``n / process_count`` local devices of each process."""
    processes = jax.process_count()
    if n % processes:
        raise ValueError(f"devices: expected a multiple of the {processes} processes (each "
                         f"gives the same number of devices), got {n}")
    per, local = n // processes, jax.local_device_count()
    if per > local:
        hint = ""
        if jax.default_backend() == "cpu":
            hint = (f"; on CPU, start Python with XLA_FLAGS=--xla_force_host_platform_"
                    f"device_count={per} (or call jax.config.update('jax_num_cpu_devices', "
                    f"{per}) right after importing jax) to split the CPU into {per} devices")
        raise ValueError(f"devices: expected at most the {local * processes} devices JAX "
                         f"sees ({local} per process on {jax.default_backend()}), got {n}"
                         + hint)
    by_process: dict[int, list] = {}
    for d in _devices_by_process():
        by_process.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_process) for d in by_process[p][:per]]


def make_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis (``"data"``) mesh for data parallel training.

    Args:
      devices: ``None`` for every device of every process; an int ``N`` for
        ``N`` devices in all (``N / process_count`` from each process, its
        first local devices); or a sequence of ``jax.Device``.

    Returns:
      a ``jax.sharding.Mesh`` with ``Auto`` axis types, so ``jax.jit`` follows
      the shardings of its inputs (``jax.make_mesh`` would default to
      ``Explicit`` axes in this JAX).

    >>> dict(make_mesh(1).shape)
    {'data': 1}
    """
    if devices is None:
        chosen = _devices_by_process()
    elif isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        chosen = _first_devices(positive_int("devices", devices))
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError(f"devices: expected None, an int or a non-empty sequence of "
                            f"jax.Device, got {devices!r}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices: expected distinct devices, got {chosen}")
    return Mesh(np.array(chosen), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def describe(mesh: Mesh) -> str:
    """``data parallel over 4 devices in 2 processes``.

    Args:
      mesh: a ``jax.sharding.Mesh`` (e.g. from ``make_mesh``).

    Returns:
      str, one line naming the device and process counts.

    >>> describe(make_mesh(1))
    'data parallel over 1 device in 1 process'
    """
    n, p = mesh.size, len({d.process_index for d in mesh.devices.flat})
    return (f"data parallel over {n} device{'s' if n > 1 else ''} in {p} "
            f"process{'es' if p > 1 else ''}")


def check_batch_size(batch_size: int, mesh: Mesh, *, name: str = "batch_size") -> int:
    """``batch_size`` if the mesh's devices split it evenly, else a ``ValueError`` naming
    the nearest sizes that work.

    Args:
      batch_size: int, the global batch size.
      mesh: a mesh with a ``"data"`` axis (``make_mesh``).
      name: how the caller's argument is spelled in the message.

    Returns:
      ``batch_size``, unchanged.

    >>> check_batch_size(130, make_mesh(1))
    130
    """
    n = mesh.shape[DATA_AXIS]
    if batch_size % n:
        below, above = batch_size // n * n, (batch_size // n + 1) * n
        sizes = " or ".join(str(s) for s in (below, above) if s > 0)
        raise ValueError(f"{name}: expected a multiple of the {n} devices of the mesh (each "
                         f"device takes 1/{n} of every batch), got {batch_size}; use {sizes}, "
                         f"or a device count that divides {batch_size}")
    return batch_size


def check_mesh(mesh: Any) -> Mesh:
    """``mesh`` if it is a ``jax.sharding.Mesh`` with a ``"data"`` axis, else a ``TypeError``.

    Args:
      mesh: the value a caller passed as ``mesh=``.

    Returns:
      ``mesh``, unchanged.

    >>> check_mesh("cpu")
    Traceback (most recent call last):
    ...
    TypeError: mesh: expected a jax.sharding.Mesh with a 'data' axis (parallel.make_mesh()), ...
    """
    if not isinstance(mesh, Mesh) or DATA_AXIS not in mesh.axis_names:
        raise TypeError(f"mesh: expected a jax.sharding.Mesh with a {DATA_AXIS!r} axis "
                        f"(parallel.make_mesh()), got {mesh!r}")
    return mesh
