"""Processes: start times from ``/proc``, liveness, and signal deferral.

* ``start_ticks(pid)``: a process's start time (Linux clock ticks), which tells
  a reused pid apart; ``seconds_since_start()``: this process's age.
* ``process_alive(pid, start)``: whether a process of this host still runs.
* ``signals_deferred()``: SIGINT/SIGTERM wait until a block (a save, a
  restore) is done, then act as they would have.
* ``exit_now(code, message)``: end the process at once (``os._exit``), the one
  place in jaxnet that does: a watchdog whose peers never came, a failed process
  of several, a Ctrl-C before anything was written.

Everything returns ``None`` (or does nothing) where ``/proc`` or signals are
unavailable, e.g. off Linux or off the main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

SIGNAL_WORDS = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)",
                signal.SIGHUP: "hung up (SIGHUP)"}
"""How the ``jaxnet`` command names the signals that end it."""

__all__ = ["SIGNAL_WORDS", "exit_now", "process_alive", "seconds_since_start", "signals_deferred",
           "start_ticks"]


def _stat_field(pid: int | str, index: int) -> int:
    """Field ``index`` (0-based, after the command name) of ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read(4096).rsplit(b")", 1)[1].split()[index])


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or ``None``.

    Args:
      pid: a process id.

    Returns:
      int, or ``None`` where ``/proc`` cannot tell (no such process, not Linux).

    >>> start_ticks(os.getpid()) == start_ticks(os.getpid())
    True
    """
    try:
        return _stat_field(pid, 19)
    except (OSError, IndexError, ValueError):
        return None


def seconds_since_start() -> float | None:
    """Wall time since this process started (Linux), so a timing can count the imports.

    Returns:
      float seconds, or ``None`` where ``/proc`` cannot tell.

    >>> age = seconds_since_start()
    >>> age is None or age >= 0
    True
    """
    try:
        ticks = _stat_field("self", 19)
        with open("/proc/uptime", "rb") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def process_alive(pid: Any, start: Any = None) -> bool | None:
    """Whether process ``pid`` of this host runs.

    Args:
      pid: the recorded process id (any JSON value: it comes from a file).
      start: its recorded ``start_ticks``, if any; a process with that pid
        but another start time is a newer one (the pid was reused).

    Returns:
      ``True``/``False``, or ``None`` if ``pid`` is no valid pid.

    >>> process_alive(os.getpid(), start_ticks(os.getpid()))
    True
    >>> print(process_alive("12"))
    None
    """
    from ._checks import _is_int  # numpy: not at import, which the command's start-up needs

    if not _is_int(pid) or not 0 < pid < 2**31:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    except (OverflowError, ValueError, OSError):
        return None
    if _is_int(start):
        now = start_ticks(pid)
        if now is not None and now != start:
            return False  # the pid was reused by a newer process
    return True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block is done, then act as they would have.

    A save or restore is never cut in half by Ctrl-C (twice in a row included):
    it finishes (or fails), then the first pending signal takes effect. Off the
    main thread (where Python cannot set handlers) it does nothing.

    >>> with signals_deferred():
    ...     pass
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, lambda s, _frame: pending.append(s))
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, None)  # e.g. raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def exit_now(code: int, message: str | None = None) -> None:
    """Flush, print ``message`` (one line on stderr) if any, and end the process at once
    with status ``code`` (no atexit, no JAX shutdown barrier, no exception to swallow).

    Safe in a signal handler: the message goes out with one ``os.write``.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken stream must not stop the exit
        pass
    finally:
        if message is not None:
            try:
                os.write(2, (message + "\n").encode("utf-8", "replace"))
            except OSError:
                pass
        os._exit(code)
