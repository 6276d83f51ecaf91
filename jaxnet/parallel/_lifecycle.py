"""A process's life in a multi-process run: joining it, the mesh a CLI asks for, and ending.

It ends the process at once (``_proc.exit_now``, jaxnet's one ``os._exit``)
when the processes cannot all connect in time, and when a failed process of a
multi-process run must end before JAX's shutdown barrier waits for peers
that are gone.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from typing import Any

import jax
from jax.sharding import Mesh

from .._checks import positive_int
from .._proc import exit_now
from ._cluster import from_environment, joined_line, settings_from_environment
from ._errors import DistributedError
from ._mesh import make_mesh

__all__ = ["end_process", "initialize_distributed", "setup_mesh"]

# Set when every process of the run knows that it stops (``check_together`` found a
# failure or a difference): they can then leave in order, through JAX's shutdown barrier.
_EVERYONE_STOPS = False
_SHUTDOWN_S = 30  # bound on that barrier; past it the process ends anyway
# Process 0's claim on its coordinator port, held while the process lives (see _claim_port).
_CLAIM: socket.socket | None = None
_IN_USE = ("coordinator_address: port {port} is in use on this host (another program, an "
           "earlier run, or another process started as process 0: each process needs its own "
           "process id); choose a free port, the same in every process")
logger = logging.getLogger(__name__)


def _check_address(address: Any) -> str:
    host, sep, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator_address: expected 'HOST:PORT' such as "
                         f"'10.0.0.1:1234' (process 0's host, a free port), got {address!r}")
    return address


def _check_process_id(process_id: Any, num_processes: int | None) -> None:
    if not isinstance(process_id, int) or isinstance(process_id, bool) or process_id < 0 \
            or (num_processes is not None and process_id >= num_processes):
        raise ValueError(f"process_id: expected an int in [0, {num_processes or 'n'}), "
                         f"got {process_id!r}")


def _already_joined(num_processes: int | None, process_id: int | None) -> bool:
    """True if this process already joined the same run; a ``DistributedError`` if another."""
    if not jax.distributed.is_initialized():
        return False
    if num_processes in (None, jax.process_count()) and process_id in (None, jax.process_index()):
        return True
    raise DistributedError(f"initialize_distributed: already initialized as process "
                           f"{jax.process_index()} of {jax.process_count()}, got "
                           f"process_id={process_id}, num_processes={num_processes}")


def _claim_port(port: int) -> None:
    """Claim ``port`` for this process's coordinator on this host, for the process's life.

    The probe below releases the port at once, and JAX's coordinator binds it
    with ``SO_REUSEPORT``: two processes started as process 0 at the same
    moment both pass the probe and both serve on the port. An abstract Unix
    socket named after the port (Linux; bound once per network namespace, freed
    when the process ends, however it ends) lets only one of them through.
    """
    global _CLAIM
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) if hasattr(socket, "AF_UNIX") \
        else None
    if claim is None:
        return
    try:
        claim.bind(f"\0jaxnet-coordinator-{port}")
    except OSError as e:
        claim.close()
        if e.errno == errno.EADDRINUSE:
            raise DistributedError(_IN_USE.format(port=port)) from None
        return  # no abstract sockets here (not Linux): the probe alone
    _CLAIM = claim


def _check_port_free(address: str) -> None:
    """Process 0's coordinator port is free on this host (JAX binds ``[::]:PORT``), and no
    other process of this host claimed it as process 0.

    A taken port otherwise ends in a native abort or crash inside JAX, or in
    the other processes joining whatever listens there.
    """
    port = int(address.rpartition(":")[2])
    if _CLAIM is None:
        _claim_port(port)
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here: probe IPv4
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            try:
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind((host, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise DistributedError(_IN_USE.format(port=port)) from None
                if e.errno == errno.EACCES:
                    raise DistributedError(
                        f"coordinator_address: port {port} needs privileges on this host; "
                        f"choose a free port above 1023, the same in every process") from None
                continue  # e.g. no dual-stack socket: probe IPv4
            return


def _start_watchdog(timeout_s: int, coordinator_address: str | None,
                    num_processes: int | None, process_id: int | None) -> threading.Timer:
    """A timer that ends the process with one line on stderr after ``timeout_s``; JAX would
    abort a little later, with a stack trace."""
    who = ("this process" if process_id is None
           else f"process {process_id} of {num_processes or '?'}")
    where = coordinator_address or "the coordinator found in the environment"
    watchdog = threading.Timer(timeout_s, exit_now, args=(1, (
        f"jaxnet: error: initialize_distributed: {who} could not connect to all "
        f"{num_processes or 'the'} processes through {where} within {timeout_s} s; start "
        f"every process with the same coordinator address and number of processes and its "
        f"own process id, process 0 on the coordinator's host, and check that the port is "
        f"free there and reachable from the others; a process that stopped before joining "
        f"(see its own message) leaves the others waiting this long: jaxnet launch, or "
        f"--init-timeout, ends them sooner")))
    watchdog.daemon = True
    watchdog.start()
    return watchdog


def _explain(error: Exception, coordinator_address: str | None) -> DistributedError:
    """JAX's error from ``jax.distributed.initialize`` as a ``DistributedError`` that names
    the fix."""
    text = str(error)
    if "before any JAX" in text:
        return DistributedError("initialize_distributed: must run before any JAX computation "
                                "in this process (jax.devices(), creating arrays...); call it "
                                "first thing in your script")
    if coordinator_address is None and ("should be defined" in text or "must be defined" in text):
        return DistributedError(f"initialize_distributed: no cluster environment (Slurm, Open "
                                f"MPI, Kubernetes...) detected and the arguments are incomplete "
                                f"({text}); pass coordinator_address='HOST:PORT', num_processes "
                                f"and process_id, or start the processes with jaxnet launch")
    return DistributedError(f"initialize_distributed: {text.splitlines()[0]}")


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           *, timeout_s: int = 300, heartbeat_timeout_s: int = 100) -> None:
    """Join a multi-process run: ``jax.distributed.initialize``, bounded and with clear errors.

    Call it first in every process, before any JAX computation. Process 0
    runs the coordinator at ``coordinator_address`` (its own host and a free
    port) and every process connects to it; afterwards ``jax.devices()`` lists
    the devices of all processes and ``make_mesh()`` spans them. With all three
    arguments ``None``, they come from ``jaxnet launch``'s variables
    (``JAXNET_COORDINATOR_ADDRESS``, ``JAXNET_NUM_PROCESSES``,
    ``JAXNET_PROCESS_ID``), or Kubeflow Trainer's (the same with ``JAX_``),
    else JAX reads them from a Slurm, Open MPI, Kubernetes or Cloud TPU
    environment (its cluster auto-detection). Process 0
    then logs one line (logger ``jaxnet``; the CLI prints it), e.g. ``joined 4
    processes through Slurm (process 0 of 4, coordinator node01:61447)``.

    Args:
      coordinator_address: ``"HOST:PORT"`` of process 0.
      num_processes: how many processes take part.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      timeout_s: how long to wait for every process to connect (JAX's
        ``initialization_timeout``).
      heartbeat_timeout_s: after this long without a heartbeat a process is
        considered dead and the others stop.

    Raises:
      ValueError: a malformed argument or ``JAXNET_*`` variable (named, with its
        value).
      DistributedError: JAX computations already ran in this process, no
        cluster was detected, it was already initialized differently, or (in
        process 0) the coordinator's port is taken on this host.

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
    source = None  # how the settings were found, for the report
    if coordinator_address is None and num_processes is None and process_id is None:
        (coordinator_address, num_processes, process_id), source = \
            settings_from_environment()
    if coordinator_address is not None:
        _check_address(coordinator_address)
    if num_processes is not None:
        positive_int("num_processes", num_processes)
    if process_id is not None:
        _check_process_id(process_id, num_processes)
    timeout_s = positive_int("timeout_s", timeout_s)
    heartbeat_timeout_s = positive_int("heartbeat_timeout_s", heartbeat_timeout_s)
    if _already_joined(num_processes, process_id):
        return
    if process_id == 0 and coordinator_address is not None:
        _check_port_free(coordinator_address)
    watchdog = _start_watchdog(timeout_s, coordinator_address, num_processes, process_id)
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   initialization_timeout=timeout_s + 30,
                                   heartbeat_timeout_seconds=heartbeat_timeout_s)
    except (RuntimeError, ValueError, TypeError) as e:
        raise _explain(e, coordinator_address) from None
    finally:
        watchdog.cancel()
    joined = _joined()  # not jax.process_index(): that would start the backend now
    if joined is not None and joined[0] == 0:
        logger.info(joined_line(source, joined[1], 0, joined[2]))


def _joined() -> tuple[int, int, str | None] | None:
    """``(process_id, num_processes, coordinator_address)`` as JAX joined, auto-detected
    ones included (for the report only: no public API says them before the backend
    starts), or ``None``."""
    try:
        from jax._src import distributed
        state = distributed.global_state
        return int(state.process_id), int(state.num_processes), state.coordinator_address
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def setup_mesh(devices: int | None = None, *, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               timeout_s: int = 300, cluster: bool = False) -> Mesh | None:
    """The mesh that ``jaxnet train mnist --devices/--num-processes/...`` asks for.

    Runs before any JAX computation: joins the multi-process run when asked
    (``initialize_distributed``), and on CPU splits the CPU into enough XLA
    devices for ``devices`` (``jax_num_cpu_devices``, unless ``XLA_FLAGS``
    already sets a count). Under ``jaxnet launch`` (its ``JAXNET_*``
    variables) it joins that run when no process argument is given. Returns
    ``None`` when nothing is asked: one device, no mesh, exactly the
    single-device path.

    Args:
      devices: optional int, devices in all (a multiple of ``num_processes``).
      coordinator_address: ``"HOST:PORT"`` of process 0 (multi-process runs).
      num_processes: how many processes take part.
      process_id: this process's index.
      timeout_s: how long to wait for every process to connect.
      cluster: join the run that Slurm, Open MPI or Kubernetes started, with
        ``jax.distributed``'s auto-detection, when no process argument is given.

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
    given = any(v is not None for v in (coordinator_address, num_processes, process_id))
    launched = (None, None, None) if given else from_environment()  # jaxnet launch's
    distributed = given or cluster or launched[0] is not None
    count = num_processes if given else launched[1]  # for the devices per process
    if devices is not None:
        devices = positive_int("devices", devices)
        per_process, rest = divmod(devices, count or 1)
        if rest:
            raise ValueError(f"devices: expected a multiple of num_processes {count}, "
                             f"got {devices}")
        if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
            try:
                jax.config.update("jax_num_cpu_devices", max(per_process, 1))
            except RuntimeError:
                pass  # JAX already started: make_mesh says how many devices there are
    if distributed:  # with no process argument, from jaxnet launch's variables or the cluster
        initialize_distributed(coordinator_address, num_processes, process_id,
                               timeout_s=timeout_s)
    if devices is None and not distributed:
        return None
    return make_mesh(devices)


def stop_together() -> None:
    """Record that every process of this run knows it stops (``check_together`` told them
    all), so that ``end_process`` leaves through JAX's shutdown barrier instead of at once."""
    global _EVERYONE_STOPS
    _EVERYONE_STOPS = True


def end_process(code: int) -> int:
    """Return ``code``; but a failed (``code != 0``) process of a multi-process run ends
    now, with that status.

    At exit JAX's shutdown waits for every process at a barrier (one may be
    gone, or waiting for this one in a collective) and then aborts with a
    stack trace; ending at once lets the others see the failure immediately.
    When every process knows that the run stops (``check_together`` raised in
    all of them), they meet at that barrier first (at most 30 s), so that
    process 0, which holds the coordination service, never leaves before the
    others have printed their line: JAX would abort them.

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
        if _EVERYONE_STOPS:
            watchdog = threading.Timer(_SHUTDOWN_S, exit_now, args=(code,))
            watchdog.daemon = True
            watchdog.start()
            try:
                jax.distributed.shutdown()
            except Exception:  # noqa: BLE001  # leaving anyway; the line is printed already
                pass
        exit_now(code)
    return code
