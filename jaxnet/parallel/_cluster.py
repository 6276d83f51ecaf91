"""Where a multi-process run's settings come from: ``jaxnet launch``'s environment
variables, or a cluster that ``jax.distributed`` detects (Slurm, Open MPI, Kubernetes),
and the one line process 0 prints once every process has joined.

``jaxnet launch --nproc N`` gives each process ``JAXNET_COORDINATOR_ADDRESS``,
``JAXNET_NUM_PROCESSES`` and ``JAXNET_PROCESS_ID``; ``initialize_distributed``
fills any argument left ``None`` from them. Without them, JAX's own
auto-detection reads the variables a cluster launcher sets; ``detect_cluster``
names the cluster by the same variables (``jax._src.clusters``, jax 0.10), so
the report says what was used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ENV_ADDRESS", "ENV_COUNT", "ENV_ID", "detect_cluster", "from_environment",
           "joined_line", "settings_from_environment"]

ENV_ADDRESS = "JAXNET_COORDINATOR_ADDRESS"
ENV_COUNT = "JAXNET_NUM_PROCESSES"
ENV_ID = "JAXNET_PROCESS_ID"

# (name, variables that must all be set), in the order jax.distributed tries them.
_CLUSTERS = (
    ("Open MPI", ("OMPI_MCA_orte_hnp_uri",)),
    ("Slurm", ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
               "SLURM_LOCALID")),
    ("Cloud TPU (GKE)", ("TPU_WORKER_HOSTNAMES", "TPU_WORKER_ID")),
    ("Kubernetes", ("KUBERNETES_SERVICE_HOST",)),
)


def _int_variable(environ: Mapping[str, str], name: str, minimum: int) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return None
    if not text.strip().isdigit() or int(text) < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {text!r}")
    return int(text)


def from_environment(environ: Mapping[str, str] | None = None, prefix: str = "JAXNET_"
                     ) -> tuple[str | None, int | None, int | None]:
    """``(coordinator_address, num_processes, process_id)`` from ``JAXNET_*`` variables
    (``jaxnet launch``), or with ``prefix="JAX_"`` from the ``JAX_*`` ones that Kubeflow
    Trainer's JAX runtime sets.

    Args:
      environ: the environment to read (default ``os.environ``).
      prefix: ``"JAXNET_"`` or ``"JAX_"``, before ``COORDINATOR_ADDRESS``,
        ``NUM_PROCESSES`` and ``PROCESS_ID``.

    Returns:
      A triple; each item ``None`` where its variable is unset or empty.

    Raises:
      ValueError: a variable that is set but malformed (named, with its value).

    >>> from_environment({"JAXNET_COORDINATOR_ADDRESS": "127.0.0.1:1234",
    ...                   "JAXNET_NUM_PROCESSES": "2", "JAXNET_PROCESS_ID": "1"})
    ('127.0.0.1:1234', 2, 1)
    >>> from_environment({})
    (None, None, None)
    """
    environ = os.environ if environ is None else environ
    address = environ.get(f"{prefix}COORDINATOR_ADDRESS") or None
    return (address, _int_variable(environ, f"{prefix}NUM_PROCESSES", 1),
            _int_variable(environ, f"{prefix}PROCESS_ID", 0))


def settings_from_environment(environ: Mapping[str, str] | None = None
                              ) -> tuple[tuple[str | None, int | None, int | None], str | None]:
    """The run's settings for ``initialize_distributed()`` with no arguments, and their
    source for the report: ``jaxnet launch``'s variables, else all three ``JAX_*`` ones
    (Kubeflow Trainer), else ``(None, None, None)`` and the cluster JAX will detect.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      ``((coordinator_address, num_processes, process_id), source)``.

    >>> settings_from_environment({"JAX_COORDINATOR_ADDRESS": "mnist-0.svc:1234",
    ...                            "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
    (('mnist-0.svc:1234', 2, 0), 'the JAX_* variables (Kubeflow Trainer)')
    """
    launched = from_environment(environ)
    if launched[0] is not None:
        return launched, "jaxnet launch"
    injected = from_environment(environ, prefix="JAX_")
    if None not in injected:
        return injected, "the JAX_* variables (Kubeflow Trainer)"
    return (None, None, None), detect_cluster(environ)


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """The cluster whose variables ``jax.distributed.initialize()`` would use, by name.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      ``"Open MPI"``, ``"Slurm"``, ``"Cloud TPU (GKE)"`` or ``"Kubernetes"``
      (the first present, in JAX's order), or ``None``.

    >>> detect_cluster({"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[01-04]",
    ...                 "SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"})
    'Slurm'
    >>> print(detect_cluster({"SLURM_JOB_ID": "7"}))  # sbatch alone: no srun step
    None
    """
    environ = os.environ if environ is None else environ
    for name, variables in _CLUSTERS:
        if all(v in environ for v in variables):
            return name
    return None


def joined_line(source: str | None, count: int, index: int, address: str | None) -> str:
    """The report process 0 prints once every process has joined.

    Args:
      source: how the settings were found (``"Slurm"``, ``"jaxnet launch"``, ...),
        or ``None`` when they were given as arguments.
      count: the number of processes; index: this process's; address: the coordinator.

    Returns:
      str, one line.

    >>> joined_line("Slurm", 4, 0, "node01:61447")
    'joined 4 processes through Slurm (process 0 of 4, coordinator node01:61447)'
    >>> joined_line(None, 2, 0, "10.0.0.1:1234")
    'joined 2 processes (process 0 of 2, coordinator 10.0.0.1:1234)'
    """
    where = f", coordinator {address}" if address else ""
    through = f" through {source}" if source else ""
    return (f"joined {count} process{'es' if count != 1 else ''}{through} (process {index} of "
            f"{count}{where})")
