"""The orbax adapter: what orbax writes and reads, one process at a time, quietly."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import why

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """Keep orbax's worker-thread tracebacks off stderr: jaxnet reports one line instead.

    Orbax logs each failure of its writer threads through absl (hundreds of
    lines for a full disk) and can leave coroutines that complain when
    collected; both are kept at debug level here.
    """
    records: list[logging.LogRecord] = []

    class _Capture(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            records.append(record)
            return False

    capture = _Capture()
    absl = logging.getLogger("absl")
    absl.addFilter(capture)
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        gc.collect()  # collect orbax's abandoned coroutines now, while they are silenced
        raise
    finally:
        absl.removeFilter(capture)
        sys.unraisablehook = old_hook
        if failed:  # its writes still in flight report into its closed loop after this
            ignore_closed_loop_callbacks()
        for record in records:
            logger.debug("orbax: %s", record.getMessage().splitlines()[0][:500])


def _without_closed_loop_noise(hook):
    """``hook`` minus one message: ``RuntimeError: Event loop is closed``."""
    def filtered(unraisable) -> None:
        exc = getattr(unraisable, "exc_value", None)
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return  # a write of a save that already failed, finishing after orbax's loop closed
        hook(unraisable)

    filtered.jaxnet_closed_loop_filter = True
    return filtered


def ignore_closed_loop_callbacks() -> None:
    """After a failed orbax save: drop the late ``Event loop is closed`` reports.

    orbax runs a save in a fresh asyncio loop and closes it as soon as one write
    fails (disk full); the other writes (tensorstore futures) still finish and call
    back into the closed loop, which Python prints as ``Exception ignored in: …
    RuntimeError: Event loop is closed``, several times, after the one-line error
    the save already gave. Only that exact report is dropped; every other
    unraisable exception reaches the hook that was installed before.
    """
    if not getattr(sys.unraisablehook, "jaxnet_closed_loop_filter", False):
        sys.unraisablehook = _without_closed_loop_noise(sys.unraisablehook)


def orbax_why(e: BaseException) -> str:
    """One line for an orbax/tensorstore failure, naming the OS error when it has one."""
    if isinstance(e, OSError):
        return why(e)
    match = re.search(r"os_error_code='?(\d+)", str(e))
    if match:
        code = int(match[1])
        return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
    return why(e)


def checkpointer(ocp):
    """Orbax's checkpointer for this process alone.

    In a multi-process run one process (process 0, see ``jaxnet.parallel``)
    saves and restores; by default orbax would wait at barriers for all the
    others, which never come (a hang).
    """
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.Checkpointer(ocp.StandardCheckpointHandler(multiprocessing_options=options),
                            multiprocessing_options=options)


def host_local(x):
    """What orbax is given to write: in a multi-process run a numpy copy (orbax refuses
    arrays that are not global, and a global one would need every process)."""
    if jax.process_count() > 1 and isinstance(x, jax.Array):
        return np.asarray(x)  # a replicated global array: this process's full copy
    return x


def flat(leaves: list) -> dict[str, Any]:
    return {f"{i:05d}": x for i, x in enumerate(leaves)}


def stored_leaves(leaves: list) -> dict[str, Any]:
    """``flat(leaves)`` without the zero-size arrays, which orbax refuses to write: an
    empty array is all shape and dtype, and the manifest records both (and its digest)."""
    return {k: x for k, x in flat(leaves).items() if np.size(x) > 0}


def empty_like(x) -> jax.Array | np.ndarray:
    """The restored value of a zero-size leaf of ``like``: its shape and dtype, placed as
    ``restore_target`` places the others."""
    target = restore_target(x)
    if isinstance(target, np.ndarray):
        return target
    return jax.device_put(np.zeros(target.shape, target.dtype), target.sharding)


def restore_target(x) -> jax.ShapeDtypeStruct | np.ndarray:
    if jax.process_count() > 1:  # restored as numpy, by this process alone (see checkpointer)
        return np.zeros(np.shape(x), jnp.asarray(x).dtype)
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype, sharding=sharding)
