"""Bounded memory (issue 18 item 5): compiled variants, data reads, data on a mesh.

* ``evaluate`` keeps a bounded number of compiled variants: a loop of calls with
  a fresh ``functools.partial`` (or lambda) each time neither grows without bound
  nor, for a partial of literal arguments, recompiles.
* One IDX file may declare at most ``$JAXNET_MAX_DATA_BYTES`` (default a quarter
  of RAM, at most 2 GiB): a larger one is refused, naming the variable, before
  anything is allocated (the fault rows, in the table style of ``test_faults``).
* With a mesh, each device holds its share of the training set, not a copy:
  the peak RSS of an 8-device run stays near a 1-device run's.

RSS is measured in subprocesses (``/proc/self/statm``, ``ru_maxrss``) with
margins for a shared machine; each bound is one the old code broke by far.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from test_faults import Case, bounded, idx_bytes

from conftest import ROOT
from jaxnet import cli, datasets

ENV = "JAXNET_MAX_DATA_BYTES"


def _python(code: str, *args, devices: int | None = None, timeout: float = 300) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- compiled variants


_EVALUATE_LOOP = """
import functools, json, os, sys, time
import jax.numpy as jnp, numpy as np
from jaxnet import losses, nn
from jaxnet.train import evaluate

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

apply, params, model_state = nn.split(nn.MLP(32, [64], 4, rngs=0))
x = np.random.default_rng(0).normal(size=(256, 32)).astype(np.float32)
y = (np.arange(256) % 4).astype(np.int32)
kind, calls = sys.argv[1], int(sys.argv[2])

def fresh(i):
    if kind == "partial":  # the learner's habit: a new partial in every call
        return functools.partial(losses.cross_entropy, label_smoothing=0.0)
    if kind == "lambda":
        return lambda out, labels, **kw: losses.cross_entropy(out, labels, **kw)
    return nn.CrossEntropyLoss()

first = evaluate(apply, params, (x, y), model_state=model_state, loss_fn=fresh(0), batch_size=64)
for i in range(10):  # warm up: the allocator's arenas, the first variants
    evaluate(apply, params, (x, y), model_state=model_state, loss_fn=fresh(i), batch_size=64)
before, t0 = rss_mb(), time.perf_counter()
for i in range(calls):
    last = evaluate(apply, params, (x, y), model_state=model_state, loss_fn=fresh(i),
                    batch_size=64)
print(json.dumps({"growth_mb": rss_mb() - before, "same": last == first,
                  "ms_per_call": (time.perf_counter() - t0) / calls * 1000}))
"""


def test_evaluate_with_a_fresh_partial_each_call_grows_rss_by_under_60_mb():
    out = _python(_EVALUATE_LOOP, "partial", 100)
    assert out["same"]
    assert out["growth_mb"] < 60, out  # was ~3.5 MiB per call: ~350 MB
    assert out["ms_per_call"] < 150, out  # compiled once, not 0.3-0.8 s per call


def test_evaluate_with_a_fresh_loss_object_each_call_compiles_once():
    out = _python(_EVALUATE_LOOP, "object", 50)
    assert out["same"] and out["ms_per_call"] < 150, out


def test_evaluate_with_a_fresh_lambda_each_call_keeps_a_bounded_number_of_variants():
    # a fresh lambda may read other globals: it compiles again, but old variants are let go
    out = _python(_EVALUATE_LOOP, "lambda", 20)
    assert out["same"]
    assert out["growth_mb"] < 40, out  # was ~3.5 MiB per call: ~70 MB


def test_evaluate_keys_a_partial_by_its_literal_arguments_with_their_types():
    from jaxnet.train import _evaluate

    key = _evaluate._stable_key
    import functools

    from jaxnet import losses, nn

    f = losses.cross_entropy
    assert key(functools.partial(f, label_smoothing=0.1)) == key(
        functools.partial(f, label_smoothing=0.1))
    assert key(functools.partial(f, label_smoothing=1)) != key(
        functools.partial(f, label_smoothing=1.0))  # 1 == 1.0, but not the same program
    assert key(nn.CrossEntropyLoss()) == key(nn.CrossEntropyLoss())
    assert key(nn.CrossEntropyLoss()) != key(nn.NLLLoss())
    assert key(lambda o, y: o) != key(lambda o, y: o)
    arr = np.ones(3)
    assert key(functools.partial(f, weight=arr)) != key(functools.partial(f, weight=arr.copy()))


# --------------------------------------------------------------------------- data reads (table)


def small_dataset(ws: Path, n: int = 64) -> None:
    folder = ws / "data"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, rows in (("train", 4 * n), ("t10k", n)):
        images = rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8)
        labels = (np.arange(rows) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def honest_3_gib(ws: Path) -> None:
    """A 3 MB valid .gz whose header declares 3 GiB of images and that holds them all."""
    small_dataset(ws)
    rows = (3 << 30) // 784
    header = (0x0803).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in (rows, 28, 28))
    zeros = gzip.compress(bytes(16 << 20))  # one member of 16 MiB; members concatenate
    with (ws / "data" / "t10k-images-idx3-ubyte.gz").open("wb") as f:
        f.write(gzip.compress(header))
        for _ in range(-(-rows * 784 // (16 << 20))):
            f.write(zeros)


def env(values: dict, call):
    def run(ws):
        with mock.patch.dict(os.environ):
            for name, value in values.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            return call(ws)
    return run


class CliFailed(Exception):
    """``jaxnet train mnist`` exited non-zero with one ``jaxnet: error:`` line."""


def cli_train(*args):
    def call(ws):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(["train", "mnist", *args])
            except SystemExit as e:
                code = e.code
        lines = err.getvalue().strip().splitlines()
        assert "Traceback" not in err.getvalue()
        if code:
            assert len(lines) == 1 and lines[0].startswith("jaxnet: error: "), lines
            raise CliFailed(f"exit {code}: {lines[0]}")
        return out.getvalue()
    return call


def _test_images(ws):
    return datasets.load_idx("data", "test")


CASES = [
    Case("idx-honest-3-gib-refused-by-default",
         env({ENV: None}, bounded(_test_images, seconds=10.0)), ValueError,
         rf"^data/t10k-images-idx3-ubyte.gz: its header declares dimensions \({(3 << 30) // 784}, "
         rf"28, 28\), {(3 << 30) // 784 * 784} bytes: more than the \d+ jaxnet reads from one "
         rf"file \(JAXNET_MAX_DATA_BYTES\); refusing to read it; set "
         rf"JAXNET_MAX_DATA_BYTES={(3 << 30) // 784 * 784} to read it", setup=honest_3_gib),
    Case("idx-env-limit-refuses-before-reading",
         env({ENV: "1000"}, bounded(_test_images, seconds=10.0)), ValueError,
         r"^data/t10k-images-idx3-ubyte.gz: its header declares dimensions \(64, 28, 28\), "
         r"50176 bytes: more than the 1000 jaxnet reads from one file \(JAXNET_MAX_DATA_BYTES\)",
         setup=small_dataset),
    Case("idx-env-limit-raised-reads", env({ENV: "1_000_000"}, _test_images),
         check=lambda ws, r: (r[0].shape == (64, 28, 28) and r[1].shape == (64,)) or
         pytest.fail(str(r)), setup=small_dataset),
    Case("idx-env-limit-exact-size-reads", env({ENV: "50176"}, _test_images),
         check=lambda ws, r: r[0].shape == (64, 28, 28) or pytest.fail(str(r)),
         setup=small_dataset),
    Case("idx-env-limit-with-a-unit", env({ENV: "2GB"}, _test_images), ValueError,
         r"^JAXNET_MAX_DATA_BYTES: expected a positive number of bytes, got '2GB'; set it to an "
         r"integer such as \d+, or unset it for the default$", setup=small_dataset),
    Case("idx-env-limit-zero", env({ENV: "0"}, _test_images), ValueError,
         r"^JAXNET_MAX_DATA_BYTES: expected a positive number of bytes, got '0'",
         setup=small_dataset),
    Case("idx-env-limit-negative", env({ENV: "-5"}, _test_images), ValueError,
         r"^JAXNET_MAX_DATA_BYTES: expected a positive number of bytes, got '-5'",
         setup=small_dataset),
    Case("idx-env-limit-empty", env({ENV: ""}, _test_images), ValueError,
         r"^JAXNET_MAX_DATA_BYTES: expected a positive number of bytes, got ''",
         setup=small_dataset),
    Case("mnist-env-limit-refused", env({ENV: "1000"}, lambda ws: datasets.load_mnist(
        "test", "data")), ValueError, r"JAXNET_MAX_DATA_BYTES", setup=small_dataset),
    Case("cli-env-limit-one-line",
         env({ENV: "1000"}, cli_train("--data-dir", "data", "--hidden", "16", "--epochs", "1",
                                      "--batch-size", "64", "--val-split", "64",
                                      "--no-progress")),
         CliFailed, r"^exit \d: jaxnet: error: data/train-images-idx3-ubyte.gz: its header "
                    r"declares .* more than the 1000 jaxnet reads from one file "
                    r"\(JAXNET_MAX_DATA_BYTES\)", setup=small_dataset),
    Case("cli-env-limit-not-a-number-one-line",
         env({ENV: "lots"}, cli_train("--data-dir", "data", "--hidden", "16", "--epochs", "1",
                                      "--no-progress")),
         CliFailed, r"^exit \d: jaxnet: error: JAXNET_MAX_DATA_BYTES: expected a positive "
                    r"number of bytes, got 'lots'", setup=small_dataset),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_data_read_limit(case, tmp_path):
    if case.setup:
        case.setup(tmp_path)
    if case.error is None:
        result = case.call(tmp_path)
        if case.check:
            case.check(tmp_path, result)
    else:
        with pytest.raises(case.error, match="(?s)" + case.match) as info:
            case.call(tmp_path)
        assert "\n" not in str(info.value)


def test_the_default_read_limit_is_a_quarter_of_memory_at_most_2_gib():
    from jaxnet import _idx

    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with mock.patch.dict(os.environ):
        os.environ.pop(ENV, None)
        assert _idx.max_idx_bytes() == min(2 << 30, memory // 4)
    assert ENV in datasets.__doc__


# --------------------------------------------------------------------------- data on a mesh


_PLACED = """
import json, os, resource, sys
import jax, numpy as np, optax
from jaxnet import losses, nn, parallel
from jaxnet.train import TrainState, fit

devices, rows = int(sys.argv[1]), int(sys.argv[2])
# 4 bytes off an aligned buffer: never zero-copy (an aligned numpy array may be aliased by a
# CPU device, which would hide the copies on a machine where RSS is the devices' memory)
x = np.empty(rows * 784 + 1, np.float32)[1:].reshape(rows, 784)
x[:] = np.random.default_rng(0).standard_normal((rows, 784), dtype=np.float32)
y = (np.arange(rows) % 10).astype(np.int32)
apply, params, model_state = nn.split(nn.MLP(784, [32], 10, rngs=0))
optimizer = optax.sgd(0.01)
state = TrainState.create(params, optimizer, model_state=model_state)
peak_mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = peak_mb()
fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=1, batch_size=512,
    mesh=parallel.make_mesh(devices) if devices else None, progress=False, log=None)
print(json.dumps({"growth_mb": peak_mb() - before, "data_mb": x.nbytes / 2**20}))
"""


def test_a_mesh_holds_one_share_of_the_training_set_not_a_copy_per_device():
    one = _python(_PLACED, 0, 30000, devices=8)
    eight = _python(_PLACED, 8, 30000, devices=8)
    # a copy per device was 7 more copies (~630 MB here); each device's share adds nothing
    assert eight["growth_mb"] < one["growth_mb"] + 2 * one["data_mb"], (one, eight)


_SHARDED_SAME = """
import json, sys
import jax, numpy as np, optax
from jaxnet import losses, nn, parallel
from jaxnet.train import TrainState, _batches, evaluate, fit

rng = np.random.default_rng(0)
x = rng.normal(size=(1001, 16)).astype(np.float32)  # not a multiple of 8 devices
y = x[:, :4].argmax(axis=1).astype(np.int32)
apply, params, model_state = nn.split(nn.MLP(16, [32], 4, dropout=0.1, rngs=0))
optimizer = optax.adam(1e-2)
mesh = parallel.make_mesh(8)

def run():
    state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
    state, history = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2,
                         batch_size=64, val_data=(x[:5], y[:5]), mesh=mesh, progress=False,
                         log=None)
    small = evaluate(apply, state, (x[:5], y[:5]), loss_fn=losses.cross_entropy, mesh=mesh)
    return ([np.asarray(a) for a in jax.tree.leaves(state)],
            [(e["train_loss"], e["val_loss"], e["val_accuracy"]) for e in history], small)

loader = _batches.as_loader((x, y), "train_data", batch_size=64)
data = _batches.Batches(loader, mesh).arrays()
rows = sorted({s.data.shape[0] for s in data[0].addressable_shards})
sharded = run()
_batches.shard_rows = lambda t, m: tuple(parallel.replicate(a, m) for a in t)  # a copy each
copied = run()
print(json.dumps({"rows_per_device": rows, "history": sharded[1] == copied[1],
                  "evaluate": sharded[2] == copied[2],
                  "bits": all(np.array_equal(a, b) and a.dtype == b.dtype
                              for a, b in zip(sharded[0], copied[0], strict=True))}))
"""


def test_sharded_data_gives_the_bits_of_a_copy_on_every_device():
    out = _python(_SHARDED_SAME, devices=8)
    assert out == {"rows_per_device": [126], "history": True, "evaluate": True, "bits": True}
