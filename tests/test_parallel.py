"""Data parallel training (``jaxnet.parallel``) on CPU: many devices, many processes.

Every multi-device run happens in a subprocess: the device count
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``) and
``jax.distributed`` must be set before JAX starts, and this pytest process
has started it already, with one device. Every subprocess has a timeout and
is killed (SIGKILL) when it passes it: a hang fails the test, never the suite.

Tolerance. Data parallel runs the same step, but the all-reduce adds the
devices' partial sums of the gradient (and of the loss) in another order than
one device's reduction over the whole batch, so float32 results differ by
rounding: measured ~2e-7 relative on a step's loss and <= 4.3e-7 absolute on
the parameters after one MNIST epoch (110 Adam steps), from ~1e-7 per step.
We require per-step losses within ``rtol=1e-5`` and parameters within
``atol=1e-5`` (weights are O(0.1)); equal bits where the arithmetic is the
same (a 1-device mesh, a resume with the same process count).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from jaxnet import checkpoint, losses, mnist, nn, parallel
from jaxnet.train import TrainState, evaluate, fit

STEP_RTOL = 1e-5
PARAM_ATOL = 1e-5


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int | None = None) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _python(code: str, *args, devices: int | None = None, timeout: float = 120):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=_env(devices))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _start(args, *, process_id: int | None = None, port: int | None = None,
           processes: int = 2) -> subprocess.Popen:
    """``python -m jaxnet *args`` (as process ``process_id`` of a multi-process run)."""
    cmd = [sys.executable, "-m", "jaxnet", *map(str, args)]
    if process_id is not None:
        cmd += ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(processes),
                "--process-id", str(process_id)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())


def _wait(procs, timeout: float) -> list[tuple[int, str, str]]:
    """Every process's ``(returncode, stdout, stderr)``; all are killed after ``timeout``."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.communicate()
        pytest.fail(f"a process did not finish within {timeout} s (a hang)")
    return results


def _jaxnet_lines(text: str) -> list[str]:
    """The lines jaxnet printed (not XLA's/absl's own log lines nor Gloo's)."""
    return [line for line in text.splitlines()
            if line and line[0] not in "WIEF[" and not line.startswith("    @")]


def _write_idx(folder: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """A small random dataset in MNIST's IDX layout (uncompressed)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(
            np.array([2051, n, 28, 28], ">i4").tobytes() + images.tobytes())
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(
            np.array([2049, n], ">i4").tobytes() + labels.tobytes())


def _mnist_like(config: mnist.MnistConfig) -> TrainState:
    """A fresh state shaped like ``train_mnist``'s, to restore its checkpoints into."""
    _, params, model_state = nn.split(mnist.build_model(config))
    return TrainState.create(params, mnist.make_optimizer(config, 1), model_state=model_state,
                             seed=config.seed)


# --------------------------------------------------------------------------- one device


def test_a_one_device_mesh_is_bit_identical_to_no_mesh():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    apply, params, model_state = nn.split(nn.MLP(8, [16], 2, dropout=0.1, rngs=0))
    opt = optax.adam(1e-2)
    runs = []
    for mesh in (None, parallel.make_mesh(1)):
        state = TrainState.create(params, opt, model_state=model_state, seed=0)
        state, history = fit(state, apply, losses.cross_entropy, opt, (x, y), epochs=2,
                             batch_size=64, val_data=(x, y), progress=False, log=None,
                             mesh=mesh)
        runs.append((state, history))
    (a, ha), (b, hb) = runs
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)
    assert [e["train_loss"] for e in ha] == [e["train_loss"] for e in hb]
    assert evaluate(apply, a, (x, y)) == evaluate(apply, a, (x, y), mesh=parallel.make_mesh(1))


def test_mesh_errors_name_the_argument_and_the_fix():
    with pytest.raises(ValueError, match=r"devices: expected at most the 1 devices .* got 2; "
                                         r"on CPU, .*xla_force_host_platform_device_count=2"):
        parallel.make_mesh(2)
    with pytest.raises(TypeError, match="devices: expected None, an int or a non-empty"):
        parallel.make_mesh([])
    with pytest.raises(TypeError, match="mesh: expected a jax.sharding.Mesh"):
        parallel.replicate({"w": np.ones(2)}, mesh="cpu")
    with pytest.raises(ValueError, match="coordinator_address: expected 'HOST:PORT'"):
        parallel.initialize_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"process_id: expected an int in \[0, 2\), got 2"):
        parallel.initialize_distributed("127.0.0.1:1234", 2, 2)
    with pytest.raises(parallel.DistributedError, match="must run before any JAX computation"):
        parallel.initialize_distributed("127.0.0.1:1234", 2, 1, timeout_s=1)


# --------------------------------------------------------------------------- 4 devices


_FOUR_DEVICES = """
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from jaxnet import checkpoint, losses, nn, parallel
from jaxnet.data import DataLoader, Dataset
from jaxnet.train import TrainState, evaluate, fit, make_train_step

def maxdiff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(jax.tree.leaves(a),
                                                               jax.tree.leaves(b), strict=True))

out = {"devices": len(jax.devices())}
rng = np.random.default_rng(0)
x = rng.normal(size=(1024, 32)).astype(np.float32)
y = x[:, :4].argmax(axis=1).astype(np.int32)
apply, params, model_state = nn.split(nn.MLP(32, [64], 4, dropout=0.1, rngs=0))
optimizer = optax.adam(1e-2)
fresh = lambda: TrainState.create(params, optimizer, model_state=model_state, seed=0)
mesh = parallel.make_mesh(4)

# the same jitted step, one device vs four, batch by batch
step = make_train_step(apply, losses.cross_entropy, optimizer)
one, four = fresh(), parallel.replicate(fresh(), mesh)
out["step_losses"] = [[], []]
for i in range(16):
    batch = (x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64])
    one, m1 = step(one, batch)
    four, m4 = step(four, parallel.shard_batch(batch, mesh))
    out["step_losses"][0].append(float(m1["loss"]))
    out["step_losses"][1].append(float(m4["loss"]))
out["step_params_maxdiff"] = maxdiff(one.params, four.params)
text = step.lower(parallel.replicate(fresh(), mesh),
                  parallel.shard_batch((x[:64], y[:64]), mesh)).compile().as_text()
out["all_reduce"] = "all-reduce" in text

# fit (the scan epoch) with validation, one device vs four
kw = dict(epochs=2, val_data=(x[:300], y[:300]), progress=False, log=None)
s1, h1 = fit(fresh(), apply, losses.cross_entropy, optimizer, (x, y), batch_size=128, **kw)
s4, h4 = fit(fresh(), apply, losses.cross_entropy, optimizer, (x, y), batch_size=128,
             mesh=mesh, **kw)
out["fit"] = [[[e["train_loss"], e["val_accuracy"]] for e in h] for h in (h1, h4)]
out["fit_params_maxdiff"] = maxdiff(s1.params, s4.params)
out["replicated"] = all(a.sharding.is_fully_replicated and len(a.sharding.device_set) == 4
                        for a in jax.tree.leaves(s4))

# a per-example Dataset (the Python loop over the jitted step) on the mesh: the same batches
class Pairs(Dataset):
    def __getitem__(self, i):
        return x[i], y[i]
    def __len__(self):
        return len(x)

s4l, _ = fit(fresh(), apply, losses.cross_entropy, optimizer,
             DataLoader(Pairs(), batch_size=128, shuffle=True), mesh=mesh, **kw)
out["loop_params_maxdiff"] = maxdiff(s4.params, s4l.params)
out["evaluate"] = [evaluate(apply, s1, (x, y), loss_fn=losses.cross_entropy),
                   evaluate(apply, s1, (x, y), loss_fn=losses.cross_entropy, mesh=mesh,
                            batch_size=999)]
try:
    fit(fresh(), apply, losses.cross_entropy, optimizer, (x, y), epochs=1, batch_size=130,
        mesh=mesh, progress=False, log=None)
except ValueError as e:
    out["batch_error"] = str(e)

# a checkpoint written from four devices, restored onto two here (onto one in another process)
checkpoint.save(sys.argv[1], s4, step=2)
back = checkpoint.restore(sys.argv[1], like=parallel.replicate(fresh(), parallel.make_mesh(2)))
out["restored_on_2"] = [sorted({len(a.sharding.device_set) for a in jax.tree.leaves(back)}),
                        all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back),
                                                                 jax.tree.leaves(s4)))]
np.savez(sys.argv[2], *[np.asarray(a) for a in jax.tree.leaves(s4)])
print(json.dumps(out))
"""

_ONE_DEVICE_RESTORE = """
import json, sys
import jax, numpy as np, optax
from jaxnet import checkpoint, nn, parallel
from jaxnet.train import TrainState

_, params, model_state = nn.split(nn.MLP(32, [64], 4, dropout=0.1, rngs=0))
like = TrainState.create(params, optax.adam(1e-2), model_state=model_state, seed=0)
saved = np.load(sys.argv[2])
saved = [saved[f"arr_{i}"] for i in range(len(saved.files))]
out = {"devices": len(jax.devices())}
for name, template in (("plain", like), ("mesh1", parallel.replicate(like, parallel.make_mesh(1)))):
    back = checkpoint.restore(sys.argv[1], like=template)
    out[name] = all(np.array_equal(a, b) and a.dtype == b.dtype
                    for a, b in zip(jax.tree.leaves(back), saved, strict=True))
print(json.dumps(out))
"""


def test_four_devices_match_one_and_their_checkpoint_restores_on_fewer(tmp_path):
    ckpt, arrays = tmp_path / "ckpt", tmp_path / "arrays.npz"
    out = _python(_FOUR_DEVICES, ckpt, arrays, devices=4)
    assert out["devices"] == 4
    np.testing.assert_allclose(out["step_losses"][1], out["step_losses"][0], rtol=STEP_RTOL)
    assert out["step_params_maxdiff"] < PARAM_ATOL
    assert out["all_reduce"], "the compiled step has no all-reduce of the gradients"
    (one, four) = np.array(out["fit"])
    np.testing.assert_allclose(four[:, 0], one[:, 0], rtol=STEP_RTOL)  # train loss per epoch
    np.testing.assert_array_equal(four[:, 1], one[:, 1])  # validation accuracy
    assert out["fit_params_maxdiff"] < PARAM_ATOL
    assert out["replicated"], "the trained state is not replicated on the 4 devices"
    assert out["loop_params_maxdiff"] < PARAM_ATOL
    ev1, ev4 = out["evaluate"]
    assert ev1["accuracy"] == ev4["accuracy"]
    assert ev4["loss"] == pytest.approx(ev1["loss"], rel=STEP_RTOL)
    assert out["batch_error"] == ("batch_size: expected a multiple of the 4 devices of the mesh "
                                  "(each device takes 1/4 of every batch), got 130; use 128 or "
                                  "132, or a device count that divides 130")
    assert out["restored_on_2"] == [[2], True]
    assert _python(_ONE_DEVICE_RESTORE, ckpt, arrays) == {"devices": 1, "plain": True,
                                                          "mesh1": True}


# --------------------------------------------------------------------------- 2 processes


MNIST_FLAGS = ["--hidden", "64", "--batch-size", "500", "--schedule", "constant",
               "--no-progress", "--epochs", "2"]
MNIST_CONFIG = mnist.RECIPES["default"].with_updates(hidden=(64,), batch_size=500,
                                                     schedule="constant")
STEPS_PER_EPOCH = 110  # (60,000 - 5,000 validation images) / 500


@pytest.fixture(scope="module")
def mnist_runs(mnist_path, tmp_path_factory):
    """Two MNIST epochs with the same global batch in one process (one device) and in two
    processes (one device each), side by side; both checkpoint every epoch, write --json."""
    root = tmp_path_factory.mktemp("mnist_runs")
    common = ["train", "mnist", "--data-dir", mnist_path, *MNIST_FLAGS]
    single = _start([*common, "--checkpoint-dir", root / "one", "--json", root / "one.json"])
    port = _free_port()
    pair = [_start([*common, "--checkpoint-dir", root / "two", "--json", root / f"two{k}.json"],
                   process_id=k, port=port) for k in range(2)]
    results = _wait([single, *pair], timeout=240)
    for (rc, _, err), name in zip(results, ("one process", "process 0", "process 1"),
                                  strict=True):
        assert rc == 0, f"{name}: {err[-3000:]}"
    return root, results


def test_two_processes_match_one_process(mnist_runs):
    root, results = mnist_runs
    one = json.loads((root / "one.json").read_text())
    two = json.loads((root / "two0.json").read_text())
    assert not (root / "two1.json").exists(), "process 1 wrote --json"
    assert (one["devices"], two["devices"]) == (1, 2)
    like = _mnist_like(MNIST_CONFIG)
    for epoch in (1, 2):  # parameters after each epoch
        a = checkpoint.restore(root / "one", like, step=epoch)
        b = checkpoint.restore(root / "two", like, step=epoch)
        assert int(a.step) == int(b.step) == epoch * STEPS_PER_EPOCH
        for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
            np.testing.assert_allclose(v, u, rtol=0, atol=PARAM_ATOL)
    # validation accuracy after epoch 1, test accuracy at the end (evaluated by 2 processes)
    assert abs(two["history"][0]["val_accuracy"] - one["history"][0]["val_accuracy"]) <= 0.003
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 0.003
    # process 0 prints; process 1 prints nothing of jaxnet's own
    assert "epoch 2/2" in results[1][1] and "test accuracy" in results[1][1]
    assert _jaxnet_lines(results[2][1]) == []


def test_a_two_process_checkpoint_resumes_exactly_in_two_processes(mnist_runs, mnist_path,
                                                                   tmp_path):
    root, _ = mnist_runs
    folder = tmp_path / "resumed"  # the 2-process run's folder as it was after epoch 1
    shutil.copytree(root / "two", folder, ignore=shutil.ignore_patterns("step_00000002"))
    assert checkpoint.all_steps(folder) == [1]
    port = _free_port()
    procs = [_start(["train", "mnist", "--data-dir", mnist_path, *MNIST_FLAGS,
                     "--checkpoint-dir", folder, "--resume", "--json", tmp_path / f"r{k}.json"],
                    process_id=k, port=port) for k in range(2)]
    for k, (rc, _, err) in enumerate(_wait(procs, timeout=180)):
        assert rc == 0, f"process {k}: {err[-3000:]}"
    resumed = json.loads((tmp_path / "r0.json").read_text())
    straight = json.loads((root / "two0.json").read_text())
    assert [e["run"] for e in resumed["history"]] == [0, 1]
    assert resumed["params_fingerprint"] == straight["params_fingerprint"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    like = _mnist_like(MNIST_CONFIG)
    a, b = checkpoint.restore(folder, like, step=2), checkpoint.restore(root / "two", like, step=2)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


# --------------------------------------------------------------------------- failures


def test_a_process_that_never_starts_is_a_one_line_error_in_bounded_time(tmp_path):
    t0 = time.monotonic()
    proc = _start(["train", "mnist", "--data-dir", tmp_path, "--init-timeout", "3"],
                  process_id=1, port=_free_port())
    [(rc, out, err)] = _wait([proc], timeout=60)
    assert rc == 1
    assert time.monotonic() - t0 < 40
    lines = _jaxnet_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("jaxnet: error: initialize_distributed: process 1 of 2 could not "
                               "connect to all 2 processes through 127.0.0.1:")
    assert "within 3 s" in lines[0]


@pytest.mark.parametrize("victim", [1, 0])
def test_a_dead_process_stops_the_other_with_an_error(tmp_path, victim):
    """Kill one process mid-training: the other exits non-zero at once, never hangs.

    Process 1 losing process 0 loses the coordination service too: JAX itself
    then ends it (SIGABRT, "another task died"), before Python can say more.
    """
    data = tmp_path / "data"
    _write_idx(data, 2000, 500)
    port = _free_port()
    args = ["train", "mnist", "--data-dir", data, "--hidden", "16", "--batch-size", "200",
            "--val-split", "0", "--epochs", "100000", "--schedule", "constant",
            "--no-progress", "--init-timeout", "60"]
    procs = [_start(args, process_id=k, port=port) for k in range(2)]
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in procs[0].stdout],
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    try:
        while True:  # training runs in both processes once process 0 logs an epoch
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("epoch 1/"):
                break
        procs[victim].kill()
        t0 = time.monotonic()
        survivor = procs[1 - victim]
        survivor.wait(timeout=60)
        elapsed = time.monotonic() - t0
    except (queue.Empty, subprocess.TimeoutExpired) as e:
        for p in procs:
            p.kill()
        pytest.fail(f"no epoch within 120 s, or the survivor hung ({type(e).__name__})")
    finally:
        for p in procs:
            p.wait()
        reader.join(timeout=10)
        errs = []
        for p in procs:
            errs.append(p.stderr.read())
            p.stdout.close()
            p.stderr.close()
    err = errs[1 - victim]
    assert survivor.returncode != 0
    assert elapsed < 30, f"took {elapsed:.1f} s to notice"
    if victim == 1:
        assert survivor.returncode == 1
        [line] = _jaxnet_lines(err)
        assert line.startswith("jaxnet: error: process 0 of 2: another process of this run "
                               "stopped or cannot be reached ("), err[-2000:]
        assert "Traceback" not in err
    else:
        assert ("jaxnet: error: process 1 of 2: another process of this run stopped" in err
                or "another task died" in err), err[-2000:]
