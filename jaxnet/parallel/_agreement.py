"""Every process of a run agrees before training: all passed their checks, all have the
same settings; otherwise every process stops, each with one line.

A process that stops alone leaves the others waiting in a collective until
JAX aborts them (SIGABRT, a native stack trace); processes with different
settings train different models, or deadlock when their step counts differ.
So every process calls ``check_together`` at the same point before
training, with its own failure or its settings, and learns the others'.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from . import _lifecycle
from ._errors import DistributedError
from ._processes import peer_failures

__all__ = ["check_together"]

_SHOWN = 5  # differing settings named in the message, at most


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _allgather_json(value: Any) -> list[Any]:
    """Every process's JSON-able ``value``, in process order (one collective per call)."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value, default=repr).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).reshape(-1)
    buffer = np.zeros(int(sizes.max()), np.uint8)
    buffer[:data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(buffer)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[:size])) for row, size in zip(rows, sizes, strict=True)]


def _show(value: Any) -> str:
    return "(not set)" if value is _MISSING else json.dumps(value)


_MISSING = object()


def _differences(settings: list[dict]) -> list[str]:
    """``'--lr' is 0.01 in process 0 and 0.02 in process 1`` for each differing setting."""
    out = []
    names = list(dict.fromkeys(name for s in settings for name in s))
    for name in names:
        first = settings[0].get(name, _MISSING)
        for k, other in enumerate(settings[1:], start=1):
            value = other.get(name, _MISSING)
            if _show(value) != _show(first):
                out.append(f"{name} is {_show(first)} in process 0 and {_show(value)} in "
                           f"process {k}")
                break
    return out


def check_together(settings: Mapping[str, Any] | None = None, *,
                   failure: BaseException | None = None) -> None:
    """Before training, in every process at the same point: stop every process if any
    failed its checks or their settings differ.

    Each process passes either its ``settings`` (it is ready) or the exception
    its checks raised (``failure``); all learn the others' through one
    collective. Then, in every process: a process's own ``failure`` is raised
    again; the others raise ``DistributedError`` ("process K of P stopped
    before training: …", its one-line message); with no failure, settings
    that differ from process 0's raise ``DistributedError`` naming each
    setting and both values. A failed multi-process command then ends in
    order (``end_process``): no process is left waiting for one that is gone.

    Args:
      settings: optional mapping of a setting's name (as the user spells it,
        e.g. ``"--lr"`` or ``"epochs"``) to a JSON-able value; compared as
        JSON text (``-0.0``, ``NaN`` and list vs tuple included).
      failure: the exception this process's checks raised, if any; it is
        raised again after the others have learned of it.

    Raises:
      DistributedError: another process failed, or the settings differ.
      The ``failure`` itself, in the process that passed it.

    With one process, ``failure`` is raised as it is and ``settings`` need
    nobody's agreement:

    >>> check_together({"--lr": 0.01})
    >>> check_together(failure=ValueError("--json: exists.json already exists"))
    Traceback (most recent call last):
    ...
    ValueError: --json: exists.json already exists
    """
    if failure is not None and not isinstance(failure, BaseException):
        raise TypeError(f"failure: expected an exception or None, got {failure!r}")
    if settings is not None and not isinstance(settings, Mapping):
        raise TypeError(f"settings: expected a mapping of names to JSON values or None, got "
                        f"{type(settings).__name__}")
    if jax.process_count() == 1:
        if failure is not None:
            raise failure
        return
    mine = {"failure": None if failure is None else _one_line(failure),
            "settings": {str(k): v for k, v in (settings or {}).items()}}
    with peer_failures():
        everyone = _allgather_json(mine)
    me, count = jax.process_index(), jax.process_count()
    failed = [(k, s["failure"]) for k, s in enumerate(everyone) if s["failure"] is not None]
    if failed:
        _lifecycle.stop_together()
        if failure is not None:
            raise failure
        k, message = failed[0]
        others = f" (and process {', '.join(str(j) for j, _ in failed[1:])})" \
            if len(failed) > 1 else ""
        raise DistributedError(f"process {k} of {count} stopped before training{others}: "
                               f"{message[:2000]}")
    differ = _differences([s["settings"] for s in everyone])
    if differ:
        _lifecycle.stop_together()
        more = f"; and {len(differ) - _SHOWN} more" if len(differ) > _SHOWN else ""
        raise DistributedError(
            f"process {me} of {count}: the processes' settings differ: "
            f"{'; '.join(differ[:_SHOWN])}{more}; start every process with the same settings "
            f"(only the process id differs)")
