"""The public surface and the import-time rule (heavy extras load lazily)."""

import pytest

import jaxnet
from conftest import run_python


def test_public_api_is_listed():
    for name in jaxnet.__all__:
        assert hasattr(jaxnet, name), name
    for module in (jaxnet.nn, jaxnet.losses, jaxnet.data, jaxnet.train, jaxnet.metrics,
                   jaxnet.checkpoint, jaxnet.datasets, jaxnet.devices):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_import_does_not_load_heavy_extras():
    code = ("import sys, jaxnet; heavy = [m for m in ('jax', 'flax', 'optax', 'orbax', 'tqdm', "
            "'matplotlib', 'tensorflow', 'tensorflow_datasets', 'torch', 'safetensors') "
            "if m in sys.modules]; print(heavy); from jaxnet import nn, train; "
            "heavy = [m for m in ('orbax', 'tqdm', 'matplotlib', 'tensorflow', 'torch', "
            "'safetensors') if m in sys.modules]; print(heavy)")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "[]"]  # nothing until used; extras only when needed


def _wait_for_handlers(pid: int, timeout: float = 60.0) -> None:
    """Until process ``pid`` catches SIGTERM and SIGHUP (``SigCgt`` in /proc: the first
    thing ``jaxnet.__main__`` does)."""
    import signal
    import time

    want = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGHUP - 1))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                caught = next(int(line.split()[1], 16) for line in f
                              if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return  # no /proc (or the process ended): nothing to wait for
        if caught & want == want:
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} installed no signal handler in {timeout} s")


def _first_epoch_seconds(tmp_path, mnist_path) -> float:
    """Seconds from process start to the first epoch line of a course run (this machine)."""
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jaxnet", "train", "mnist", "--no-progress",
                             "--recipe", "course", "--epochs", "1", "--data-dir",
                             str(mnist_path)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("epoch"):
            break
    seconds = time.perf_counter() - t0
    proc.kill()
    proc.communicate()
    return seconds


@pytest.mark.parametrize("signame, steps", [("SIGINT", 6), ("SIGTERM", 2), ("SIGHUP", 2)])
def test_a_signal_at_any_moment_of_start_up_is_one_line_and_its_status(tmp_path, mnist_path,
                                                                       signame, steps):
    """Ctrl-C (or a kill, or a closed terminal) while JAX imports, the data loads or XLA
    compiles: one line, status 128 + the signal; never exit 0, a traceback or "Exception
    ignored", and no lock left behind.

    The delay sweeps the start-up (0 s, 0.1 s, then fractions of the time to the first
    epoch measured on this machine, so it holds on a fast or a loaded one) instead of one
    sleep. It counts from the moment the command's first handler is in place (read from
    /proc: before that, the interpreter itself has not reached jaxnet's first line, and a
    signal gets the interpreter's default).
    """
    import signal
    import subprocess
    import sys
    import time

    signum = getattr(signal, signame)
    words = {"SIGINT": "interrupted (SIGINT)", "SIGTERM": "terminated (SIGTERM)",
             "SIGHUP": "hung up (SIGHUP)"}[signame]
    total = _first_epoch_seconds(tmp_path, mnist_path)
    delays = [0.0, 0.1, *(total * k / steps for k in range(1, steps))]
    for delay in delays:
        folder = f"ck{delay:.2f}"
        proc = subprocess.Popen([sys.executable, "-m", "jaxnet", "train", "mnist",
                                 "--no-progress", "--recipe", "course", "--data-dir",
                                 str(mnist_path), "--checkpoint-dir", folder],
                                cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        _wait_for_handlers(proc.pid)
        time.sleep(delay)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, (delay, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"jaxnet: {words}"), (delay, err)
        assert "Exception ignored" not in out + err, delay
        assert not (tmp_path / folder / ".jaxnet-lock").exists(), delay


def test_devices_report():
    assert jaxnet.devices.backend() in ("cpu", "gpu", "tpu")
    assert jaxnet.devices.describe().startswith(jaxnet.devices.backend())
    assert isinstance(jaxnet.devices.gpu_available(), bool)


def test_training_runs_on_the_gpu_when_one_is_visible():
    import jax
    import numpy as np
    import optax
    import pytest

    from jaxnet import losses, nn
    from jaxnet.train import TrainState, fit

    if not jaxnet.devices.gpu_available():
        pytest.skip("no GPU visible to JAX (CPU-only jaxlib or no device); this checks the "
                    "CUDA path on machines that have one")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    apply, params, _ = nn.split(nn.MLP(8, [32], 2, rngs=0))
    optimizer = optax.adam(1e-2)
    state, history = fit(TrainState.create(params, optimizer), apply, losses.cross_entropy,
                         optimizer, (x, y), epochs=3, batch_size=32, progress=False, log=None)
    leaf = jax.tree.leaves(state.params)[0]
    assert next(iter(leaf.devices())).platform == "gpu"
    assert history[-1]["train_loss"] < history[0]["train_loss"]
