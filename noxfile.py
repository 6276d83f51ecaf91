"""Developer sessions: ``nox -s tests``, ``lint``, ``package``, ``bench``, ``docs``.

CI (``.ci/run``) runs the README's test command; these are the same checks in
isolated environments.
"""

import os
import shutil

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
    """Build the site in English (docs/_build/html) and Chinese (docs/_build/html/zh_CN).

    Every tutorial executes once, warnings are errors: the English build starts from an
    empty jupyter-cache (docs/_build/.jupyter_cache: its key is a page's code cells, not
    jaxnet's source, so a kept cache could show another jaxnet's outputs) and fills it;
    the Chinese build (catalogs in docs/locale/zh_CN) reuses those outputs. ``-E``
    re-reads every page even when docs/_build exists; ``-j auto`` executes the notebooks
    side by side, one per reader process, as .ci/run does. Then tests/test_i18n.py:
    catalogs current and translated, outputs the same in both languages.
    """
    session.install("-e", ".[docs]", "pytest")
    mnist = os.path.abspath("../shared/data/mnist")
    if "JAXNET_DATA_DIR" not in os.environ and os.path.isdir(mnist):
        session.env["JAXNET_DATA_DIR"] = mnist
    shutil.rmtree(os.path.join(HERE, "docs", "_build", ".jupyter_cache"), ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-E", "-j", "auto", "-b", "html",
                "docs", "docs/_build/html", *session.posargs)
    session.run("sphinx-build", "-W", "--keep-going", "-E", "-j", "auto", "-b", "html",
                "-D", "language=zh_CN", "docs", "docs/_build/html/zh_CN", *session.posargs)
    session.run("python", "-m", "pytest", "-q", "tests/test_i18n.py",
                env={"JAXNET_I18N_REQUIRE_BUILD": "1"})


@nox.session
def bench(session):
    """jaxnet vs PyTorch, Flax NNX, Keras 3 and Equinox on MNIST, then the NaN guard's cost.

    Same recipe, same machine, alternating fresh processes (``benchmarks/mnist_peers.py``;
    its flags after ``--``): the peers in their idioms and at their best (Keras
    ``steps_per_execution``, ``torch.compile``), the matmul floor and ceiling, the
    targets as ratios per round, time to first result cold and warm, the float32/bf16
    and cost-growth grid, and peak RSS on 1-64 CPU devices. ``nox -s bench -- --quick``
    checks that it all runs. (The GPU check, ``benchmarks/gpu_check.sh``, is not here.)
    """
    session.install("-e", ".[torch,bench]")
    session.env.setdefault("JAXNET_DATA_DIR", os.environ.get(
        "JAXNET_DATA_DIR", os.path.abspath("../shared/data/mnist")))
    session.run("python", "benchmarks/mnist_peers.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/finite_guard.py", *quick)
