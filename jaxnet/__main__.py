"""``python -m jaxnet`` and the ``jaxnet`` command (``jaxnet.__main__:run``).

Importing it installs a first signal handler, before anything heavy loads (numpy,
JAX): a Ctrl-C, SIGTERM or SIGHUP that early ends the command with one line and
status 128 + the signal instead of a traceback from the middle of an import.
``cli.main`` then installs the handlers that run for the rest of the command.
"""

import signal

from ._proc import SIGNAL_WORDS, exit_now


def _before_main(signum, frame):
    exit_now(128 + signum, f"jaxnet: {SIGNAL_WORDS[signum]}")


for _signum in SIGNAL_WORDS:
    signal.signal(_signum, _before_main)

from .cli import main  # noqa: E402  (after the handler: this import loads numpy)


def run() -> None:
    """The command: ``main()``'s status as the exit status. After a signal (status
    128 + N) the process ends at once: the run has cleaned up and printed its line, and
    tearing the interpreter down while XLA's threads are mid-computation can crash."""
    status = main()
    if status > 128:
        exit_now(status)
    raise SystemExit(status)


if __name__ == "__main__":
    run()
