"""Data parallel training over many devices and processes: ``DistributedDataParallel``, the JAX way.

One idea: a ``jax.sharding.Mesh`` with one axis, ``"data"``, over the
devices. The ``TrainState`` is *replicated* (every device holds all the
parameters) and every batch is *sharded* along its first axis (each device
holds ``batch_size / devices`` rows of it). The same jitted train step and
scan epoch compile for these inputs: XLA inserts the all-reduce that adds up
the shards' gradients (what DDP's backward hooks do), so every device applies
the same update, equal to the single-device one up to float32 rounding (the
partial sums are added in another order). ``train.fit``,
``train.make_epoch_runner`` and ``train.evaluate`` take ``mesh=``; nothing
else changes::

    mesh = parallel.make_mesh()            # every device (or make_mesh(4))
    state, history = fit(state, apply, loss_fn, optimizer, (x, y), epochs=5,
                         batch_size=256, mesh=mesh)

Several processes (one per host, or one per GPU) run the same script, each
calling ``initialize_distributed`` first; ``make_mesh()`` then spans every
device of every process::

    parallel.initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=K)
    mesh = parallel.make_mesh()

Every process computes the same global batch order (a pure function of the
seed and the epoch) and feeds only the rows its own devices hold; process 0
alone logs, shows progress and reads and writes checkpoints (the others get
its state by ``broadcast_from_primary``), like rank 0 in PyTorch.

What it is for: more devices (GPUs, TPU cores, hosts) than one. On a single
CPU host, splitting the CPU into several XLA devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``) is for testing the
multi-device code paths, not for speed (``benchmarks/parallel_epoch.py``).

>>> mesh = make_mesh(1)
>>> mesh.axis_names, mesh.size
(('data',), 1)
>>> check_batch_size(64, mesh)
64
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._checks import positive_int

__all__ = [
    "DATA_AXIS",
    "DistributedError",
    "broadcast_from_primary",
    "check_batch_size",
    "describe",
    "end_process",
    "initialize_distributed",
    "is_primary",
    "iter_epoch",
    "local_rows",
    "make_mesh",
    "peer_failures",
    "replicate",
    "setup_mesh",
    "shard_batch",
    "start_from_primary",
]

DATA_AXIS = "data"


class DistributedError(ConnectionError):
    """A multi-process run could not start, or lost one of its processes."""


# --------------------------------------------------------------------------- the mesh


def _devices_by_process() -> list:
    """Every device of every process, grouped by process, so that each process's devices
    are one contiguous block of the ``"data"`` axis (it then feeds one block of rows)."""
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


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
    processes = jax.process_count()
    if devices is None:
        chosen = _devices_by_process()
    elif isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        n = positive_int("devices", devices)
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
        chosen = [d for p in sorted(by_process) for d in by_process[p][:per]]
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


def _check_mesh(mesh: Any) -> Mesh:
    if not isinstance(mesh, Mesh) or DATA_AXIS not in mesh.axis_names:
        raise TypeError(f"mesh: expected a jax.sharding.Mesh with a {DATA_AXIS!r} axis "
                        f"(parallel.make_mesh()), got {mesh!r}")
    return mesh


# --------------------------------------------------------------------------- placement


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
    sharding = NamedSharding(_check_mesh(mesh), P())
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
    _check_mesh(mesh)
    sharding = NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))

    def put(x):
        shape = np.shape(x)
        if len(shape) <= axis:
            raise ValueError(f"batch: expected arrays with a batch axis {axis}, got shape {shape}")
        check_batch_size(shape[axis], mesh)
        return _put(x, sharding)

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
    check_batch_size(batch_size, _check_mesh(mesh))
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
    batch_size = check_batch_size(loader.batch_size, _check_mesh(mesh))
    rows = local_rows(mesh, batch_size)
    if rows == slice(0, batch_size):  # one process feeds every row
        for batch in loader.iter_epoch(epoch, pad_last=True):
            yield shard_batch(batch, mesh)
        return
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    indices, mask = loader.index_batches(epoch)
    for i in range(len(indices)):
        local = (*loader.fetch(indices[i, rows]), mask[i, rows])
        yield jax.tree.map(lambda a: jax.make_array_from_process_local_data(
            sharding, np.asarray(a), (batch_size, *np.shape(a)[1:])), local)


# --------------------------------------------------------------------------- processes


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


def _exit_now(message: str, code: int = 1) -> None:
    """Print one line and end the process at once (no atexit, no JAX shutdown barrier)."""
    try:
        sys.stdout.flush()
    finally:
        print(message, file=sys.stderr, flush=True)
        os._exit(code)


def _check_address(address: Any) -> str:
    host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator_address: expected 'HOST:PORT' such as "
                         f"'10.0.0.1:1234' (process 0's host, a free port), got {address!r}")
    return address


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           *, timeout_s: int = 300, heartbeat_timeout_s: int = 100) -> None:
    """Join a multi-process run: ``jax.distributed.initialize``, bounded and with clear errors.

    Call it first in every process, before any JAX computation. Process 0
    runs the coordinator at ``coordinator_address`` (its own host and a free
    port) and every process connects to it; afterwards ``jax.devices()`` lists
    the devices of all processes and ``make_mesh()`` spans them. With all three
    arguments ``None``, JAX reads them from a SLURM, Open MPI, Kubernetes or
    Cloud TPU environment (its cluster auto-detection).

    Args:
      coordinator_address: ``"HOST:PORT"`` of process 0.
      num_processes: how many processes take part.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      timeout_s: how long to wait for every process to connect (JAX's
        ``initialization_timeout``).
      heartbeat_timeout_s: after this long without a heartbeat a process is
        considered dead and the others stop.

    Raises:
      ValueError: a malformed argument (named, with its value).
      DistributedError: JAX computations already ran in this process, no
        cluster was detected, or it was already initialized differently.

    If the processes cannot all connect within ``timeout_s``, JAX would abort
    the process with a stack trace; this function ends it first, with exit
    status 1 and one line on stderr saying what to check.

    A real run needs several processes, each starting with (``K`` its index)::

        parallel.initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=K)
        mesh = parallel.make_mesh()  # every device of both processes

    In one process, the arguments are checked before anything connects:

    >>> initialize_distributed("10.0.0.1", num_processes=2, process_id=0)
    Traceback (most recent call last):
    ...
    ValueError: coordinator_address: expected 'HOST:PORT' ...
    """
    if coordinator_address is not None:
        _check_address(coordinator_address)
    if num_processes is not None:
        positive_int("num_processes", num_processes)
    if process_id is not None:
        if not isinstance(process_id, int) or isinstance(process_id, bool) or process_id < 0 \
                or (num_processes is not None and process_id >= num_processes):
            raise ValueError(f"process_id: expected an int in [0, {num_processes or 'n'}), "
                             f"got {process_id!r}")
    timeout_s = positive_int("timeout_s", timeout_s)
    heartbeat_timeout_s = positive_int("heartbeat_timeout_s", heartbeat_timeout_s)
    if jax.distributed.is_initialized():
        if num_processes in (None, jax.process_count()) \
                and process_id in (None, jax.process_index()):
            return
        raise DistributedError(f"initialize_distributed: already initialized as process "
                               f"{jax.process_index()} of {jax.process_count()}, got "
                               f"process_id={process_id}, num_processes={num_processes}")
    who = ("this process" if process_id is None
           else f"process {process_id} of {num_processes or '?'}")
    where = coordinator_address or "the coordinator found in the environment"
    watchdog = threading.Timer(timeout_s, _exit_now, args=(
        f"jaxnet: error: initialize_distributed: {who} could not connect to all "
        f"{num_processes or 'the'} processes through {where} within {timeout_s} s; start "
        f"every process with the same coordinator address and number of processes and its "
        f"own process id, process 0 on the coordinator's host, and check that the port is "
        f"free there and reachable from the others",))
    watchdog.daemon = True
    watchdog.start()  # JAX would abort a little later, with a stack trace
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   initialization_timeout=timeout_s + 30,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s)
    except (RuntimeError, ValueError, TypeError) as e:
        text = str(e)
        if "before any JAX" in text:
            raise DistributedError("initialize_distributed: must run before any JAX "
                                   "computation in this process (jax.devices(), creating "
                                   "arrays...); call it first thing in your script") from None
        if coordinator_address is None and ("should be defined" in text
                                            or "must be defined" in text):
            raise DistributedError(f"initialize_distributed: no cluster environment "
                                   f"(SLURM, Open MPI, ...) detected and the arguments "
                                   f"are incomplete ({text}); pass coordinator_address="
                                   f"'HOST:PORT', num_processes and process_id") from None
        raise DistributedError(f"initialize_distributed: {text.splitlines()[0]}") from None
    finally:
        watchdog.cancel()


def setup_mesh(devices: int | None = None, *, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_s: int = 300) -> Mesh | None:
    """The mesh that ``jaxnet train mnist --devices/--num-processes/...`` asks for.

    Runs before any JAX computation: joins the multi-process run when asked
    (``initialize_distributed``), and on CPU splits the CPU into enough XLA
    devices for ``devices`` (``jax_num_cpu_devices``, unless ``XLA_FLAGS``
    already sets a count). Returns ``None`` when nothing is asked: one device,
    no mesh, exactly the single-device path.

    Args:
      devices: optional int, devices in all (a multiple of ``num_processes``).
      coordinator_address: ``"HOST:PORT"`` of process 0 (multi-process runs).
      num_processes: how many processes take part.
      process_id: this process's index.
      timeout_s: how long to wait for every process to connect.

    Returns:
      A one-axis ``jax.sharding.Mesh`` (``make_mesh(devices)``), or ``None``
      when no argument is given.

    A multi-process run calls it in every process, e.g. ``setup_mesh(4,
    coordinator_address="10.0.0.1:1234", num_processes=2, process_id=K)``.
    In one process:

    >>> print(setup_mesh())
    None
    >>> setup_mesh(1).size
    1
    """
    distributed = any(v is not None for v in (coordinator_address, num_processes, process_id))
    if devices is not None:
        devices = positive_int("devices", devices)
        per_process, rest = divmod(devices, num_processes or 1)
        if rest:
            raise ValueError(f"devices: expected a multiple of num_processes {num_processes}, "
                             f"got {devices}")
        if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
            try:
                jax.config.update("jax_num_cpu_devices", max(per_process, 1))
            except RuntimeError:
                pass  # JAX already started: make_mesh says how many devices there are
    if distributed:
        initialize_distributed(coordinator_address, num_processes, process_id,
                               timeout_s=timeout_s)
    if devices is None and not distributed:
        return None
    return make_mesh(devices)


# --------------------------------------------------------------------------- failures


_LOST = ("Gloo", "Connection closed", "Connection reset", "heartbeat", "coordination service",
         "DEADLINE_EXCEEDED")


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


def end_process(code: int) -> int:
    """Return ``code``; but a failed (``code != 0``) process of a multi-process run ends
    now, with that status.

    At exit JAX's shutdown waits for every process at a barrier (one may be
    gone, or waiting for this one in a collective) and then aborts with a
    stack trace; ending at once lets the others see the failure immediately.

    Args:
      code: int, the process's exit status.

    Returns:
      ``code`` (a failing process of a multi-process run does not return).

    Typical use: ``sys.exit(end_process(main()))``. In one process it only
    returns the status:

    >>> end_process(0), end_process(2)
    (0, 2)
    """
    if code and jax.distributed.is_initialized() and jax.process_count() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
