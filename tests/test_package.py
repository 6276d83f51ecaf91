"""The public surface and the import-time rule (heavy extras load lazily)."""

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


def test_ctrl_c_while_jax_is_still_loading_is_one_line(tmp_path, mnist_path):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "jaxnet", "train", "mnist", "--no-progress",
                             "--data-dir", str(mnist_path)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)  # start-up: importing jax/flax/optax or loading the data
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxnet: interrupted (SIGINT)"), err


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
