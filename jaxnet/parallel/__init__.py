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

Started by ``jaxnet launch --nproc N`` or by Slurm, Open MPI, Kubernetes or
Kubeflow Trainer, ``initialize_distributed()`` takes all three from the
environment.

Before training every process calls ``check_together`` at the same point,
with its settings or the error its own checks raised: if any failed or the
settings differ, every process stops with one line naming the process, or
the setting and both values (``fit(..., mesh=)`` and ``jaxnet train mnist``
do it for you).

Contract. Every process computes the same global batch order (a pure
function of the seed and the epoch) and feeds only the rows its own devices
hold. Process 0 alone logs, shows progress and reads and writes checkpoints;
the others get its state by ``broadcast_from_primary``, like rank 0 in
PyTorch. Knows nothing of ``train`` or ``checkpoint``: it places trees and
coordinates processes. It ends a process at once only where JAX
would otherwise abort it.

What it is for: more devices (GPUs, TPU cores, hosts) than one. On a single
CPU host, splitting the CPU into several XLA devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``) is for testing the
multi-device code paths, not for speed (``benchmarks/parallel_epoch.py``).

What it offers: the mesh (``make_mesh``, ``setup_mesh``, ``describe``,
``check_batch_size``, ``DATA_AXIS``), the placement of states and batches
(``replicate``, ``shard_batch``, ``local_rows``, ``iter_epoch``), the
processes (``initialize_distributed``, ``is_primary``,
``broadcast_from_primary``, ``start_from_primary``, ``check_together``,
``peer_failures``, ``end_process``) and ``DistributedError``.

>>> mesh = make_mesh(1)
>>> mesh.axis_names, mesh.size
(('data',), 1)
>>> check_batch_size(64, mesh)
64
"""

# For developers, where things live:
# Files: ``_mesh`` (``make_mesh``, ``describe``, ``check_batch_size``,
# ``DATA_AXIS``) · ``_placement`` (``replicate``, ``shard_batch``,
# ``local_rows``, ``iter_epoch``) · ``_processes`` (``is_primary``,
# ``broadcast_from_primary``, ``start_from_primary``, ``peer_failures``) ·
# ``_agreement`` (``check_together``) · ``_lifecycle``
# (``initialize_distributed``, ``setup_mesh``, ``end_process``, the watchdog) ·
# ``_cluster`` (the settings from ``jaxnet launch``'s or a cluster's environment,
# and the one-line report of how the processes joined) · ``_errors``
# (``DistributedError``). ``_lifecycle`` ends a process at once
# (``_proc.exit_now``) only where JAX would otherwise abort it.

from ._agreement import check_together as check_together
from ._errors import DistributedError as DistributedError
from ._lifecycle import end_process as end_process
from ._lifecycle import initialize_distributed as initialize_distributed
from ._lifecycle import setup_mesh as setup_mesh
from ._mesh import DATA_AXIS as DATA_AXIS
from ._mesh import check_batch_size as check_batch_size
from ._mesh import describe as describe
from ._mesh import make_mesh as make_mesh
from ._placement import iter_epoch as iter_epoch
from ._placement import local_rows as local_rows
from ._placement import replicate as replicate
from ._placement import shard_batch as shard_batch
from ._processes import broadcast_from_primary as broadcast_from_primary
from ._processes import is_primary as is_primary
from ._processes import peer_failures as peer_failures
from ._processes import start_from_primary as start_from_primary

__all__ = [
    "DATA_AXIS",
    "DistributedError",
    "broadcast_from_primary",
    "check_batch_size",
    "check_together",
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


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)
