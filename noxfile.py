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
    """Run every code cell of the tutorials in docs/ (they must all execute)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/test_docs.py", *session.posargs)


@nox.session
def bench(session):
    """jaxnet vs PyTorch on MNIST (same recipe, same machine, alternating runs)."""
    session.install("-e", ".[torch]")
    session.env.setdefault("JAXNET_DATA_DIR", os.environ.get(
        "JAXNET_DATA_DIR", os.path.abspath("../shared/data/mnist")))
    session.run("python", "benchmarks/mnist_vs_torch.py", *session.posargs)
    session.run("python", "benchmarks/finite_guard.py")
