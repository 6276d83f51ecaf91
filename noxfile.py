"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``, ``nox -s docs``.

CI (``.ci/run``) runs the README's test command; these are the same checks in
isolated environments.
"""

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session):
    """The full test suite, with the TFDS backend installed."""
    session.install("-e", ".[test,tfds]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session):
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session
def docs(session):
    """Build the site into docs/_build/html, executing every tutorial; warnings are errors.

    ``-E`` re-reads (so re-executes) every page even when docs/_build exists.
    """
    session.install("-e", ".[docs]")
    mnist = os.path.abspath("../shared/data/mnist")
    if "JAXNET_DATA_DIR" not in os.environ and os.path.isdir(mnist):
        session.env["JAXNET_DATA_DIR"] = mnist
    session.run("sphinx-build", "-W", "--keep-going", "-E", "-b", "html", "docs",
                "docs/_build/html", *session.posargs)


@nox.session
def bench(session):
    """jaxnet vs PyTorch, Flax NNX, Keras 3 and Equinox on MNIST, then the NaN guard's cost.

    Same recipe, same machine, alternating fresh processes, the matmul ceiling
    and the cost growth in the same run (``benchmarks/mnist_peers.py``; its
    flags after ``--``). ``nox -s bench -- --quick`` checks that it all runs.
    """
    session.install("-e", ".[torch,bench]")
    session.env.setdefault("JAXNET_DATA_DIR", os.environ.get(
        "JAXNET_DATA_DIR", os.path.abspath("../shared/data/mnist")))
    session.run("python", "benchmarks/mnist_peers.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/finite_guard.py", *quick)
