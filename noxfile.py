"""Developer sessions: ``nox -s tests``, ``lint``, ``package``, ``bench``, ``docs``.

CI (``.ci/run``) runs the README's test command; these are the same checks in
isolated environments.
"""

import os

import nox

HERE = os.path.dirname(os.path.abspath(__file__))

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session):
    """The full test suite, with the TFDS backend installed."""
    session.install("-e", ".[test,tfds]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session):
    """ruff, then the layer contract (pyproject's ``[tool.importlinter]``): imports go down."""
    session.install("ruff>=0.6", "import-linter>=2.17,<3")
    session.run("ruff", "check", ".")
    session.run("lint-imports")


@nox.session
def package(session):
    """Build the sdist and the wheel, install the wheel in this fresh venv, run the smoke test.

    The dependencies come from PyPI. ``.ci/run`` does a cheaper variant: the wheel
    alone in a venv that borrows the CI venv's dependencies.
    """
    session.install("build")
    dist = session.create_tmp()
    session.run("python", "-m", "build", "--outdir", dist)
    wheel = next(f for f in os.listdir(dist) if f.endswith(".whl"))
    session.install(os.path.join(dist, wheel))
    with session.chdir(dist):  # import the installed wheel, not the checkout
        session.run("python", os.path.join(HERE, ".ci", "smoke.py"))


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
