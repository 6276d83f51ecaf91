"""The ``jaxnet`` command: ``jaxnet train mnist [options]``, ``jaxnet convert``,
``jaxnet launch --nproc N -- COMMAND``.

Thin by design: flags in, one ``jaxnet.mnist`` call, a report out.

    jaxnet train mnist --data-dir ../shared/data/mnist
    jaxnet train mnist --recipe course --json run.json --plot curves.png

How it fails: a malformed flag prints the usage of the command it belongs
to (exit 2); every other expected failure prints one line ``jaxnet: error: …``
and no traceback (exit 2 when a flag's value is unusable, found before
training; exit 1 otherwise). SIGINT/SIGTERM end with one line and exit 130/143
at any moment (a checkpoint being saved is finished first), and ``--resume``
continues exactly. ``--json``/``--plot`` are checked before training and
written atomically (strict JSON: a NaN/Inf result is ``null``). A closed or
broken stdout/stderr (``| head -1``, ``>&-``, ``2>&-``) never ends a run: the
text is dropped, the outputs and checkpoints are written, and the exit status
is the run's own (0 when all else succeeded). Importing this package loads
no JAX.

From Python: ``main(argv)`` runs the command and returns its exit status;
``build_parser()`` is its ``argparse`` parser.
"""

# For developers, where things live:
# Files: ``_main`` (``main``, signals, the exception → exit-status table) ·
# ``_flags`` (the parser; the MNIST flags generated from ``MnistConfig``) ·
# ``_train`` (``train mnist``: checks, the run, the report) · ``_convert``
# (``convert``) · ``_launch`` (``launch``: N local processes of one run) ·
# ``_outputs`` (``--json``, ``--plot``, atomic writes) · ``_streams`` (printing
# that never costs the run).

from ._flags import build_parser as build_parser
from ._main import main as main

__all__ = ["build_parser", "main"]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)
