"""Silent numbers and misleading messages at the Python API (issue 18, part R4).

Each row is an attack a learner (their PyTorch habit pasted in) or an attacker
would try: bad labels into ``fit``/``evaluate``, the wrong optimizer or the
model where ``apply`` belongs, a BatchNorm batch of 1, a state dict edited
after loading, a file that is not what its name says. Each must fail before
any training with one line naming the argument, the expected and the actual
value and the jaxnet way; or, where a call is fine, give the right number.

The table style of ``tests/test_faults.py``: ``Case(id, call, error, match,
check, setup)``; ``call(ws)`` runs in the workspace ``ws``.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_faults import Case, idx_bytes

from jaxnet import checkpoint, datasets, interop, losses, nn
from jaxnet.callbacks import NonFiniteError
from jaxnet.data import ArrayDataset, DataLoader, Dataset
from jaxnet.train import TrainState, evaluate, fit

X = np.ones((8, 3), np.float32)
Y = np.array([0, 1] * 4, np.int64)


def _split(out: int = 2, **kw):
    return nn.split(nn.MLP(3, [4], out, rngs=0, **kw))


def _fit(labels=None, *, x=X, data=None, optimizer=None, apply=None, state_opt=None,
         out: int = 2, **kw):
    """``fit`` of a tiny MLP on ``(x, labels)`` (or ``data``); returns ``(state, history)``."""
    def call(ws):
        f_apply, params, _ = _split(out)
        state = TrainState.create(params, state_opt or optax.sgd(0.1))
        train = data() if callable(data) else data
        if train is None:
            train = (x, Y if labels is None else labels)
        options = dict(epochs=1, batch_size=4, progress=False, log=None)
        options.update(kw)
        return fit(state, f_apply if apply is None else apply(), losses.cross_entropy,
                   optimizer or optax.sgd(0.1), train, **options)
    return call


def _evaluate(labels=None, *, x=X, out: int = 2, data=None, **kw):
    def call(ws):
        apply, params, model_state = _split(out)
        return evaluate(apply, params, data if data is not None else (x, labels),
                        model_state=model_state, **kw)
    return call


class Items(Dataset):
    """A per-item dataset (the host-batch path, not the scan): the course's own ``Dataset``."""

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return X[i % len(X)], self.labels[i]


ALL_MINUS_ONE = -np.ones(8, np.int64)
WRAPS = np.array([0, 1, 0, 2**32 + 1, 0, 1, 0, 1], np.int64)  # int32 would make it 1


def _safetensors_header(path: Path, tensors: dict) -> None:
    """A safetensors file written by hand: any dtype name its header may hold."""
    header, offset, data = {}, 0, b""
    for name, (dtype, shape, size) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
        data += b"\x00" * size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _write_safetensors(ws: Path, name: str) -> None:
    interop.save(ws / name, {"w": np.ones((2, 2), np.float32)})


def _renamed(src: str, dst: str):
    def setup(ws):
        _write_safetensors(ws, src)
        os.replace(ws / src, ws / dst)
    return setup


def _empty_mnist(ws: Path) -> None:
    (ws / "z").mkdir()
    for prefix in ("train", "t10k"):
        with gzip.open(ws / "z" / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(idx_bytes(np.zeros((0, 28, 28))))
        with gzip.open(ws / "z" / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(idx_bytes(np.zeros((0,))))


def _same_weights(a, b) -> bool:
    return jax.tree.all(jax.tree.map(np.array_equal, nn.state_dict(a), nn.state_dict(b)))


def _trained_last_class_never(ws, result):
    raise AssertionError("unreachable: the case must raise")


CASES = [
    # 1. labels where they enter fit: host side, before any jit, whole arrays once
    Case("fit-all-minus-one", _fit(ALL_MINUS_ONE), ValueError,
         r"^train_data: labels: expected class indices in \[0, 1\] \(the model's 2 outputs\), "
         r"got -1 at index 0; "),
    Case("fit-label-equal-to-C", _fit(np.array([0, 1, 0, 1, 0, 2, 0, 1])), ValueError,
         r"train_data: labels: .* got 2 at index 5"),
    Case("fit-int64-wraps-in-int32", _fit(WRAPS), ValueError,
         r"train_data: labels: .* got 4294967297 at index 3"),
    Case("fit-float-labels", _fit(Y.astype(np.float32)), TypeError,
         r"train_data: labels: expected a signed integer class index array, got float32; "
         r"for one-hot or probability targets pass labels.argmax\(-1\)"),
    Case("fit-uint8-labels", _fit(Y.astype(np.uint8)), TypeError,
         r"train_data: labels: expected a signed integer .* got uint8; cast with "
         r"labels.astype\(jnp.int32\)"),
    Case("fit-per-item-dataset-minus-one", _fit(data=lambda: Items(ALL_MINUS_ONE)), ValueError,
         r"train_data: labels: expected class indices in \[0, 1\] .* got -1 at index 2"),
    # shuffled: the index named is the dataset's (epoch 0's order starts 2, ...), not the batch's
    Case("fit-per-item-dataset-late-bad-label",
         _fit(data=lambda: Items(np.array([0, 1, 0, 1, 0, 1, 7, 1])), shuffle=False),
         ValueError, r"train_data: labels: .* got 7 at index 6"),
    Case("fit-dataloader-minus-one",
         _fit(data=lambda: DataLoader(ArrayDataset(X, ALL_MINUS_ONE), batch_size=4),
              batch_size=None),
         ValueError, r"train_data: labels: .* got -1 at index 0"),
    Case("fit-val-data-minus-one", _fit(val_data=(X, ALL_MINUS_ONE)), ValueError,
         r"val_data: labels: .* got -1 at index 0"),
    Case("fit-good-labels-train", _fit(), None,
         check=lambda ws, r: r[1][0]["train_loss"] > 0),
    # a state already mid-training on a 1-output model would have cross_entropy learn nothing
    Case("fit-one-output-model", _fit(out=1), ValueError,
         r"train_data: labels: expected class indices in \[0, 0\] \(the model's 1 output\), "
         r"got 1 at index 1"),
    # 4. evaluate
    Case("evaluate-minus-one", _evaluate(ALL_MINUS_ONE), ValueError,
         r"^data: labels: expected class indices in \[0, 1\] .* got -1 at index 0"),
    Case("evaluate-int64-wraps", _evaluate(WRAPS), ValueError,
         r"data: labels: .* got 4294967297 at index 3"),
    Case("evaluate-one-hot", _evaluate(np.eye(2, dtype=np.float32)[Y]), ValueError,
         r"data: labels: expected class indices of shape \(8,\), got float32 of shape \(8, 2\) "
         r"\(the model's output shape \(8, 2\)\), which gives no accuracy; for one-hot "
         r"labels pass labels.argmax\(-1\)"),
    Case("evaluate-one-output", _evaluate(np.zeros(8, np.int64), out=1), ValueError,
         r"apply: the model has 1 output.*accuracy needs scores for 2 or more classes"),
    Case("evaluate-empty", _evaluate(np.zeros(0, np.int64), x=X[:0]), ValueError,
         r"^data: expected at least one example, got an empty dataset"),
    Case("fit-empty", _fit(np.zeros(0, np.int64), x=X[:0]), ValueError,
         r"^train_data: expected at least one example, got an empty dataset"),
    Case("evaluate-regression-with-loss", _evaluate(np.ones((8, 2), np.float32),
                                                    loss_fn=losses.mse_loss), None,
         check=lambda ws, r: sorted(r) == ["loss"]),
    Case("evaluate-good", _evaluate(Y), None, check=lambda ws, r: sorted(r) == ["accuracy"]),
    # 5. the wrong optimizer, the model where apply belongs
    Case("fit-optimizer-family", _fit(optimizer=optax.adam(0.1)), TypeError,
         r"^optimizer: expected one of the family the state was created with \(its opt_state "
         r"is \(EmptyState, EmptyState\)\), got one whose state is \(ScaleByAdamState, "
         r"EmptyState\); create the state with this optimizer: TrainState.create\(params, "
         r"optimizer"),
    Case("fit-same-family-other-rate", _fit(optimizer=optax.sgd(0.5)), None,
         check=lambda ws, r: int(r[0].step) == 2),
    Case("fit-model-as-apply", _fit(apply=lambda: nn.MLP(3, [4], 2, rngs=0)), TypeError,
         r"^apply: expected the pure function of nn.split\(model\), got the model MLP itself; "
         r"write apply, params, model_state = nn.split\(model\)"),
    Case("evaluate-model-as-apply",
         lambda ws: evaluate(nn.MLP(3, [4], 2, rngs=0), _split()[1], (X, Y)), TypeError,
         r"^apply: expected the pure function of nn.split\(model\), got the model MLP"),
    # 3. BatchNorm1d on a batch of 1 in training
    Case("batchnorm-batch-of-one-train",
         lambda ws: nn.split(nn.BatchNorm1d(3)).apply(
             *nn.split(nn.BatchNorm1d(3))[1:], jnp.ones((1, 3)), train=True), ValueError,
         r"BatchNorm1d: expected more than 1 value per channel when training, got input shape "
         r"\(1, 3\)"),
    Case("batchnorm-batch-of-one-eager", lambda ws: nn.BatchNorm1d(3)(jnp.ones((1, 3))),
         ValueError, r"expected more than 1 value per channel when training"),
    Case("batchnorm-batch-of-one-eval",
         lambda ws: nn.split(nn.BatchNorm1d(3)).apply(
             *nn.split(nn.BatchNorm1d(3))[1:], jnp.ones((1, 3)), train=False), None,
         check=lambda ws, r: r[0].shape == (1, 3)),
    Case("batchnorm-one-row-length-two",  # (1, C, L) with L > 1 has values to normalise
         lambda ws: nn.BatchNorm1d(3)(jnp.arange(6.0).reshape(1, 3, 2)), None,
         check=lambda ws, r: bool(jnp.all(jnp.abs(r) > 0))),
    # 6. interop: say what the file is
    Case("pt-random-bytes", lambda ws: interop.load(ws / "rand.pt"), ValueError,
         r"rand.pt: not a PyTorch file \(no zip archive / pickle header\)",
         setup=lambda ws: (ws / "rand.pt").write_bytes(bytes(range(7, 250)) * 4)),
    Case("pt-is-safetensors", lambda ws: interop.load(ws / "w.pt"), ValueError,
         r"w.pt: not a PyTorch file: it looks like a safetensors file: rename it to "
         r"w.safetensors", setup=_renamed("w.safetensors", "w.pt")),
    Case("bin-is-safetensors", lambda ws: interop.load(ws / "w.bin"), ValueError,
         r"looks like a safetensors file: rename it to w.safetensors",
         setup=_renamed("w.safetensors", "w.bin")),
    Case("pt-empty", lambda ws: interop.load(ws / "e.pt"), ValueError,
         r"e.pt: not a PyTorch file \(an empty file\)",
         setup=lambda ws: (ws / "e.pt").write_bytes(b"")),
    Case("safetensors-f8", lambda ws: interop.load(ws / "f8.safetensors"), ValueError,
         r"f8.safetensors: tensor 'w' has dtype F8_E4M3, which is not supported",
         setup=lambda ws: _safetensors_header(ws / "f8.safetensors",
                                              {"w": ("F8_E4M3", [2], 2)})),
    Case("safetensors-is-zip", lambda ws: interop.load(ws / "z.safetensors"), ValueError,
         r"z.safetensors: not a safetensors file: it looks like a PyTorch file \(a zip "
         r"archive\): rename it to z.pt",
         setup=lambda ws: (ws / "z.safetensors").write_bytes(b"PK\x03\x04" + b"\x00" * 60)),
    Case("mnist-zero-images", lambda ws: datasets.load_mnist("test", ws / "z"), ValueError,
         r"z: holds 0 images for split 'test'; expected at least one", setup=_empty_mnist),
    # 7. issue 18's open items: each failed on the code before (a late or a foreign error)
    Case("fit-checkpoint-dir-bytes-not-utf8", lambda ws: _fit(
        checkpoint_dir=os.fsencode(ws) + b"/ck\xff")(ws), ValueError,
         r"^checkpoint_dir: expected a path in UTF-8 \(the checkpoint writer accepts no other "
         r"bytes\), got '.*ck\\udcff'; choose another folder name$"),
    Case("fit-checkpoint-dir-surrogate-str", lambda ws: _fit(
        checkpoint_dir=os.path.join(ws, os.fsdecode(b"ck\xff")))(ws), ValueError,
         r"^checkpoint_dir: expected a path in UTF-8 .*ck\\udcff'"),
    Case("save-directory-not-utf8", lambda ws: checkpoint.save(
        ws / os.fsdecode(b"ck\xfe"), {"w": np.ones(2)}, step=1), ValueError,
         r"^directory: expected a path in UTF-8 .*ck\\udcfe'"),
    Case("rngs-float-seed", lambda ws: nn.Rngs(0.5), TypeError,
         r"^nn.Rngs: seed: expected an int seed or a jax.random key, got float 0.5; "
         r"write nn.Rngs\(0\)$"),
    Case("rngs-str-seed", lambda ws: nn.Rngs("0"), TypeError,
         r"^nn.Rngs: seed: expected an int seed .* got str '0'"),
    Case("rngs-bool-seed", lambda ws: nn.Rngs(True), TypeError, r"got bool True"),
    Case("rngs-keyword-float", lambda ws: nn.Rngs(params=0, dropout=0.1), TypeError,
         r"^nn.Rngs: dropout: expected an int seed or a jax.random key, got float 0.1"),
    Case("rngs-seed-too-large", lambda ws: nn.Rngs(2**70), ValueError,
         r"^nn.Rngs: seed: expected an int seed in \[-2\*\*63, 2\*\*63\)"),
    Case("rngs-numpy-int-seed", lambda ws: nn.MLP(3, [4], 2, rngs=nn.Rngs(np.int64(3))), None,
         check=lambda ws, r: _same_weights(r, nn.MLP(3, [4], 2, rngs=nn.Rngs(3)))),
    Case("rngs-typed-key", lambda ws: nn.MLP(3, [4], 2, rngs=nn.Rngs(jax.random.key(3))), None,
         check=lambda ws, r: _same_weights(r, nn.MLP(3, [4], 2, rngs=nn.Rngs(3)))),
    Case("save-typed-prng-key", lambda ws: checkpoint.save(
        ws / "ck", {"w": jnp.ones(2), "rng": {"k": jax.random.key(0)}}, step=1), TypeError,
         r"^state: the leaf rng/k is a typed jax.random key \(key<fry>\), which a checkpoint "
         r"cannot hold; save jax.random.key_data\(key\) .* jax.random.wrap_key_data\(data\)$"),
    Case("save-raw-key-data", lambda ws: checkpoint.restore(checkpoint.save(
        ws / "ck", {"k": jax.random.key_data(jax.random.key(7))}, step=1).parent,
        like={"k": jax.random.key_data(jax.random.key(0))}), None,
         check=lambda ws, r: np.array_equal(r["k"], jax.random.key_data(jax.random.key(7)))),
]


@pytest.fixture
def ws(tmp_path):
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_api_input(case, ws, capfd):
    if case.setup:
        case.setup(ws)
    if case.error is None:
        result = case.call(ws)
        if case.check:
            assert case.check(ws, result) is not False
    else:
        with pytest.raises(case.error, match="(?s)" + case.match) as info:
            case.call(ws)
        message = str(info.value)
        assert "\n" not in message and "Traceback" not in message
        assert "weights_only=False" not in message
    out, err = capfd.readouterr()
    assert "Traceback" not in err


def test_fit_refuses_bad_labels_before_training_or_writing(tmp_path):
    """All -1 labels: nothing trains (the model keeps its weights), no checkpoint appears."""
    model = nn.MLP(3, [4], 2, rngs=0)
    apply, params, _ = nn.split(model)
    before = nn.state_dict(model)
    with pytest.raises(ValueError, match="labels"):
        fit(TrainState.create(params, optax.sgd(0.1)), apply, losses.cross_entropy,
            optax.sgd(0.1), (X, ALL_MINUS_ONE), epochs=1, batch_size=4, progress=False,
            log=None, checkpoint_dir=tmp_path / "ck")
    after = nn.state_dict(model)
    assert jax.tree.all(jax.tree.map(np.array_equal, before, after))
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


def test_the_scan_path_checks_labels_once_per_fit_not_per_epoch(monkeypatch):
    from jaxnet import _checks

    calls = []
    real = _checks.class_labels
    monkeypatch.setattr(_checks, "class_labels", lambda *a, **k: calls.append(1) or real(*a, **k))
    _fit(epochs=3)(None)
    assert len(calls) == 1


def test_the_nan_guard_names_labels_as_a_possible_cause():
    """Labels equal to C that reach the guard (a jitted loop of the user's own): the message
    names out-of-range labels."""
    error = NonFiniteError(1, 0, ["loss"])
    assert "labels outside [0, C)" in str(error)
    assert "labels" not in str(NonFiniteError(1, 0, ["grad of layers.0.kernel"]))


def test_load_state_dict_copies_and_casts_to_the_models_dtypes():
    """Editing the dict after loading leaves the model alone; int8/bool/float64 values are
    cast to the model's float32, never switch its dtype."""
    model = nn.Linear(2, 1, rngs=nn.Rngs(0))
    for dtype in (np.float64, np.int8, np.bool_):
        values = {k: np.ones(np.shape(v), dtype) for k, v in nn.state_dict(model).items()}
        nn.load_state_dict(model, values)
        assert model.kernel[...].dtype == jnp.float32 and model.bias[...].dtype == jnp.float32
        values["kernel"][...] = 0  # the caller's array, edited after loading
        assert float(model.kernel[...].sum()) == 2.0


def test_batchnorm_batch_of_one_is_refused_inside_fit_too():
    model = nn.Sequential(nn.Linear(3, 4, rngs=nn.Rngs(0)), nn.BatchNorm1d(4),
                          nn.Linear(4, 2, rngs=nn.Rngs(1)))
    apply, params, model_state = nn.split(model)
    state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    with pytest.raises(ValueError, match="more than 1 value per channel when training"):
        fit(state, apply, losses.cross_entropy, optax.sgd(0.1), (X, Y), epochs=1, batch_size=1,
            progress=False, log=None)


def test_good_labels_train_bit_identically_with_the_checks():
    """The checks change no number: same seed, same parameters, on both paths."""
    a = _fit()(None)[0]
    b = _fit(data=lambda: Items(Y), shuffle=True, seed=0)(None)[0]
    assert jax.tree.all(jax.tree.map(np.array_equal, a.params, b.params))


@pytest.mark.parametrize("name", [b"ck\xff", os.fsdecode(b"ck\xff")], ids=["bytes", "str"])
def test_fit_refuses_a_non_utf8_checkpoint_dir_before_training_or_creating(tmp_path, name):
    """The Python API checks what the CLI checks, in the same place (checkpoint.paths): no
    epoch trains, no folder or lock appears (it used to fail at the first save, after
    training, leaving the folder)."""
    model = nn.MLP(3, [4], 2, rngs=0)
    apply, params, _ = nn.split(model)
    before = nn.state_dict(model)
    folder = os.fsencode(tmp_path) + b"/" + os.fsencode(name)
    epochs = []

    class Count:
        def on_epoch_end(self, run, epoch, state, logs):
            epochs.append(epoch)

    with pytest.raises(ValueError, match="^checkpoint_dir: expected a path in UTF-8"):
        fit(TrainState.create(params, optax.sgd(0.1)), apply, losses.cross_entropy,
            optax.sgd(0.1), (X, Y), epochs=1, batch_size=4, progress=False, log=None,
            checkpoint_dir=folder if isinstance(name, bytes) else os.fsdecode(folder),
            callbacks=[Count()])
    assert epochs == [] and os.listdir(tmp_path) == []
    assert jax.tree.all(jax.tree.map(np.array_equal, before, nn.state_dict(model)))


_MESH_EVALUATE = r"""
import json, numpy as np, optax
from jaxnet import data, losses, nn, parallel, train

class Items(data.Dataset):  # the course's own per-item Dataset: the host path, not the scan
    def __init__(self, n):
        self.x = np.random.default_rng(n).random((n, 3)).astype(np.float32)
        self.y = np.arange(n) % 2
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.x[i], self.y[i]

apply, params, st = nn.split(nn.MLP(3, [4], 2, rngs=0))
mesh, out = parallel.make_mesh(), {}
for n in (1, 2, 3, 5, 8):
    kw = dict(model_state=st, loss_fn=losses.cross_entropy)
    one = train.evaluate(apply, params, Items(n), **kw)
    out[n] = [train.evaluate(apply, params, Items(n), mesh=mesh, **kw), one,
              train.evaluate(apply, params, (Items(n).x, Items(n).y), mesh=mesh, **kw)]
state = train.TrainState.create(params, optax.sgd(0.1), model_state=st)
_, h = train.fit(state, apply, losses.cross_entropy, optax.sgd(0.1), Items(3), epochs=1,
                 batch_size=4, val_data=Items(3), mesh=mesh, progress=False, log=None)
out["fit"] = [mesh.size, h[0]["val_accuracy"]]
print("RESULT " + json.dumps(out))
"""


def test_evaluate_on_a_mesh_with_fewer_rows_than_devices(tmp_path):
    """4 CPU devices, a per-item Dataset of 1, 2, 3, 5 and 8 rows: the same loss and accuracy
    as on one device (the rows padded to the devices and masked); it used to fail with
    'batch_size: expected a multiple of the 4 devices ... got 5', naming a batch_size the
    caller never gave."""
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _MESH_EVALUATE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT ", 1)[1])
    for n in ("1", "2", "3", "5", "8"):
        mesh_items, one_device, mesh_arrays = out[n]
        assert mesh_items.keys() == one_device.keys() == {"accuracy", "loss"}
        for key in one_device:
            assert mesh_items[key] == pytest.approx(one_device[key], abs=1e-6), (n, key)
            assert mesh_arrays[key] == pytest.approx(one_device[key], abs=1e-6), (n, key)
    assert out["fit"][0] == 4 and 0 <= out["fit"][1] <= 1
