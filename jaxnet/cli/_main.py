"""``main``: signals, the exception → exit-status table, and one-line errors.

No JAX at module level: the Ctrl-C handler is installed before JAX loads,
so an interrupt during start-up is one line too.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import _proc
from . import _convert, _launch, _train
from ._flags import FlagError, build_parser
from ._streams import guard_streams

_IMPORTED = time.perf_counter()
_calls = 0
_COMMANDS = {"train": _train.run, "convert": _convert.run}


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's ``KeyboardInterrupt`` so that the same
    cleanup runs."""


_SIGNALS = _proc.SIGNAL_WORDS


def _start_time() -> float:
    """``perf_counter`` at which this run started: the process's start for the command's
    first run in a process, the call itself for later in-process runs (tests)."""
    global _calls
    _calls += 1
    if _calls > 1:
        return time.perf_counter()
    since = _proc.seconds_since_start()
    return time.perf_counter() - since if since is not None else _IMPORTED


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split("\n")).strip() or type(e).__name__


def install_signal_handlers(state: dict) -> dict:
    """SIGINT, SIGTERM and SIGHUP end the run with one line and status 128 + the signal.

    Before training starts (``state["training"]`` false: JAX importing, data
    loading, checks) nothing has been written, so the process ends at once:
    an exception raised there can land inside JAX's import or its GC callback,
    which swallow it ("Exception ignored in …") and run on. Once training has
    started, the signal raises ``KeyboardInterrupt`` (``_Terminated`` for
    SIGTERM/SIGHUP) so that a save completes and the lock and work folders
    are cleaned; ``main`` also ends with the signal's status if that
    exception was swallowed. A second signal while the first is handled is
    ignored; a third ends the process at once.

    Args:
      state: a dict with ``"signals"`` (count so far) and ``"training"``; the
        handler updates ``"signals"`` and ``"signum"`` (the first signal).

    Returns:
      The previous handlers, ``{signum: handler}``, for the caller to restore.
    """

    def handler(signum, frame):
        state["signals"] += 1
        if state["signals"] == 1:
            state["signum"] = signum
            if not state.get("training"):
                _proc.exit_now(128 + signum, f"jaxnet: {_SIGNALS[signum]}")
            raise KeyboardInterrupt() if signum == signal.SIGINT else _Terminated()
        if state["signals"] >= 3:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    previous = {}
    for signum in _SIGNALS:
        try:
            previous[signum] = signal.signal(signum, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return previous


def _route_logs() -> Callable[[], None]:
    """jaxnet's notes and warnings (a non-MNIST data folder, a stale lock recovered) go to
    stdout as ``jaxnet: …`` lines; returns the function that undoes it."""
    log = logging.getLogger("jaxnet")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("jaxnet: %(message)s"))
    old = (log.propagate, log.level)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)

    def undo():
        log.removeHandler(handler)
        log.propagate, log.level = old

    return undo


def _run(argv: list[str] | None, state: dict) -> int:
    """Parse and run one command; the user's errors as one line and an exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    state["args"] = args
    args.start = state["start"]
    args.training_starts = lambda: state.update(training=True)  # signals raise from now on
    from ..checkpoint import CheckpointError
    from ..train import NonFiniteError

    try:
        return _COMMANDS[args.command](args)
    except FlagError as e:
        print(f"jaxnet: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (CheckpointError, NonFiniteError, OSError, ValueError, ImportError) as e:
        # One line, no traceback: these are the user's to fix, and the message says how.
        print(f"jaxnet: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("jaxnet: error: out of memory; choose a smaller --batch-size or --hidden",
              file=sys.stderr)
        return 1
    except RuntimeError as e:  # XLA's errors; running out of memory and a backend that
        # cannot start (JAX_PLATFORMS, XLA_FLAGS) are the user's
        if "Unable to initialize backend" in str(e):
            print(f"jaxnet: error: JAX could not start: {_one_line(e)[:300]}; check "
                  f"JAX_PLATFORMS and XLA_FLAGS", file=sys.stderr)
            return 1
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        what = str(e).split("RESOURCE_EXHAUSTED:", 1)[-1].strip().splitlines()[0].rstrip(".")
        print(f"jaxnet: error: out of memory on {_device_name()}: {what[:200]}; choose a "
              f"smaller --batch-size or --hidden", file=sys.stderr)
        return 1


def _device_name() -> str:
    import jax

    return str(jax.devices()[0].device_kind)


def main(argv: list[str] | None = None) -> int:
    """Run the ``jaxnet`` command; returns the exit status.

    A closed or broken stdout/stderr never ends the run (``_streams``): what
    cannot be printed is dropped and the status is the run's own.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    with guard_streams():
        if argv[:1] == ["launch"]:  # its own arguments: the command after "--" is not ours
            return _launch.main(argv[1:])
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    state: dict[str, Any] = {"signals": 0, "signum": None, "training": False, "args": None,
                             "start": _start_time()}
    previous: dict = {}
    undo_logs = None
    try:
        previous = install_signal_handlers(state)
        undo_logs = _route_logs()
        from ..parallel import end_process

        status = end_process(_run(argv, state))  # a failed process of several ends at once
        if state["signum"] is not None:  # the interrupt was swallowed (a GC callback): stop
            raise KeyboardInterrupt
        return status
    except KeyboardInterrupt:
        state["signals"] = max(state["signals"], 1)  # from here on, a second signal is ignored
        signum = state["signum"] or signal.SIGINT
        args = state["args"]
        hint = ""
        if args is not None and getattr(args, "checkpoint_dir", None) and state["training"]:
            hint = (f"; the checkpoints in {args.checkpoint_dir} are intact: add --resume to "
                    f"continue")
        print(f"jaxnet: {_SIGNALS[signum]}{hint}", file=sys.stderr, flush=True)
        if "jaxnet.parallel" not in sys.modules:
            return 128 + signum
        # One process of several ends now: JAX's exit would wait for peers that are ending
        # too (jaxnet launch forwards the signal to all), then abort with a native trace.
        return sys.modules["jaxnet.parallel"].end_process(128 + signum)
    finally:
        if undo_logs is not None:
            undo_logs()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
