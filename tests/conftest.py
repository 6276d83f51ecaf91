"""A strict harness: warnings are errors (pyproject), fresh keys per test, real MNIST located.

Not strict dtype promotion (``jax_numpy_dtype_promotion="strict"``): the tests of losses,
metrics, data, nn and train pass with it except the six that train with ``optax.adam``,
which fail inside optax (``optax.tree.bias_correction`` computes ``decay ** count``, a
Python float and an int32 count).
"""

import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import jax
import pytest

ROOT = Path(__file__).resolve().parents[1]
_CACHE_ENV = "JAXNET_COMPILATION_CACHE"


def pytest_configure(config):
    """The compile cache (on by default in fit and the CLI) in a fresh folder per session,
    never the real ~/.cache/jaxnet/xla; subprocesses inherit it through the environment.
    A ``JAXNET_COMPILATION_CACHE`` already set is kept."""
    if _CACHE_ENV not in os.environ:
        os.environ[_CACHE_ENV] = config._jaxnet_xla = tempfile.mkdtemp(prefix="jaxnet-xla-")


def pytest_unconfigure(config):
    folder = getattr(config, "_jaxnet_xla", None)
    if folder is not None and os.environ.get(_CACHE_ENV) == folder:
        del os.environ[_CACHE_ENV]
        shutil.rmtree(folder, ignore_errors=True)  # the session's own folder


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Every test runs in its own temporary folder: a relative path never writes
    into the checkout (subprocesses that need the repository pass ``cwd=ROOT``)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def key(request):
    """A fresh jax.random key per test, derived from the test's id: the same key in every
    process and run (a CRC, not Python's per-process salted ``hash()``)."""
    return jax.random.PRNGKey(zlib.crc32(request.node.nodeid.encode()))


def mnist_dir() -> Path | None:
    candidates = [os.environ.get("JAXNET_DATA_DIR"), ROOT.parent / "shared" / "data" / "mnist"]
    for c in candidates:
        if c and (Path(c) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found: set JAXNET_DATA_DIR or put it in ../shared/data/mnist "
                    "(.ci/run fails before tests when it is missing)")
    return path


def run_python(*args, env=None, timeout=300, cwd=ROOT):
    """Run ``python *args`` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=full_env)
