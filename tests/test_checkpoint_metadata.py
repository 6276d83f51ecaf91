"""A checkpoint's metadata and contents as ``fit`` relies on them (issue 18, part R2).

A manifest can pass the schema and still hold metadata that ``fit`` cannot
use (a history entry's ``run`` a string, ``train_seconds`` missing, an
``epoch`` that disagrees with the step, a config with wrong types). Such a
checkpoint is damaged: the resume falls back to an older intact one and
moves it aside with one line naming the field, never a crash after an epoch
trained. Also: zero-size arrays and empty states are saved (PyTorch saves
empty tensors), and the NaN/Inf guard covers everything that is saved
(parameters, BatchNorm statistics, optimizer state), on resume too.

Every row is one attack in the table style of ``tests/test_faults.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_faults import Case

from jaxnet import checkpoint, fingerprint, losses, nn
from jaxnet.callbacks import NonFiniteError
from jaxnet.checkpoint._runs import check_same_config
from jaxnet.train import TrainState, fit

CK = "ck"
DATA = (np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2), np.array([0, 1] * 4))
CONFIG = {"lr": 0.1, "hidden": [4]}


def model():
    apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    return apply, TrainState.create(params, optax.sgd(0.1), model_state=model_state)


def train(epochs, lines=None, **kwargs):
    apply, state = model()
    log = (lambda line: None) if lines is None else lines.append
    return fit(state, apply, losses.cross_entropy, optax.sgd(0.1), DATA, epochs=epochs,
               batch_size=4, checkpoint_dir=CK, config=CONFIG, progress=False, log=log,
               **kwargs)


def edit_metadata(step, edit):
    path = Path(CK, f"step_{step:08d}", "manifest.json")
    manifest = json.loads(path.read_text())
    edit(manifest["metadata"])
    path.write_text(json.dumps(manifest))


def damaged_step2(edit):
    """Two epochs trained and saved; step 2's metadata damaged by ``edit``."""
    def setup(ws):
        train(2)
        edit_metadata(2, edit)
    return setup


def resumed_to_3(ws):
    lines: list[str] = []
    state, history = train(3, lines, resume=True)
    return state, history, lines


def fell_back(field):
    """The resume used step 1, moved step 2 aside naming ``field``, and equals a straight run."""
    def check(ws, result):
        state, history, lines = result
        assert [e["epoch"] for e in history] == [1, 2, 3]
        warning = [line for line in lines if line.startswith("warning:")]
        assert len(warning) == 1 and field in warning[0] and "moved it to corrupt-step_00000002-" \
            in warning[0], lines
        assert any("continuing from ck/step_00000001 (epoch 1)" in line for line in lines), lines
        assert checkpoint.all_steps(CK) == [1, 2, 3]
        aside = [p for p in os.listdir(CK) if p.startswith("corrupt-step_00000002-")]
        assert len(aside) == 1
        os.rename(CK, "ck-resumed")
        straight, _ = train(3)
        assert fingerprint(state) == fingerprint(straight)
    return check


def entry(key, value):
    return lambda m: m["history"][0].__setitem__(key, value)


def nan_checkpoint(ws):
    """Two epochs saved with check_finite=False from NaN data: a NaN checkpoint."""
    apply, state = model()
    bad = (np.full((8, 2), np.nan, np.float32), DATA[1])
    fit(state, apply, losses.cross_entropy, optax.sgd(0.1), bad, epochs=2, batch_size=4,
        checkpoint_dir=CK, config=CONFIG, check_finite=False, progress=False, log=None)


def convert_with(edit):
    def call(ws):
        from jaxnet import mnist

        mnist.convert(_mnist_file(ws), "run", config=mnist.MnistConfig(hidden=(8,)),
                      trained_epochs=1)
        path = Path("run", "step_00000001", "manifest.json")
        manifest = json.loads(path.read_text())
        edit(manifest["metadata"]["config"])
        path.write_text(json.dumps(manifest))
        return mnist.convert("run", "back.safetensors")
    return call


def _mnist_file(ws):
    from jaxnet import interop, mnist

    return interop.save("mlp.safetensors", mnist.build_model(mnist.MnistConfig(hidden=(8,))))


def bn_apply(params, model_state, x, *, train, rng):
    """A learner's model whose BatchNorm-like statistic overflows to inf; outputs stay finite."""
    stats = model_state["bn"]["running_var"]
    new = {"bn": {"running_var": stats * 1e30 if train else stats}}
    return x @ params["w"], new


def bn_fit(ws):
    params = {"w": jnp.zeros((2, 2))}
    state = TrainState.create(params, optax.sgd(0.1),
                              model_state={"bn": {"running_var": jnp.ones(2)}})
    return fit(state, bn_apply, losses.cross_entropy, optax.sgd(0.1), DATA, epochs=2,
               batch_size=4, checkpoint_dir=CK, progress=False, log=None)


def adam_overflow_fit(ws):
    """Adam's second moment overflows (gradients of 1e20 squared) while the parameters and
    the loss stay finite: the optimizer state is poisoned silently."""
    params = {"w": jnp.ones((2, 2))}

    def apply(params, model_state, x, *, train, rng):
        return x @ params["w"], model_state

    def loss_fn(outputs, labels, *, mask=None):
        return 1e20 * losses.cross_entropy(outputs, labels, mask=mask)

    state = TrainState.create(params, optax.adam(1e-3))
    return fit(state, apply, loss_fn, optax.adam(1e-3), DATA, epochs=1, batch_size=4,
               checkpoint_dir=CK, progress=False, log=None)


def no_checkpoints(ws, result):
    assert checkpoint.all_steps(CK) == []


CASES = [
    # ---- item 1: metadata that passes the schema but not fit -> damaged -> fall back
    Case("resume-history-run-str", resumed_to_3, check=fell_back("history[0].run"),
         setup=damaged_step2(entry("run", "x"))),
    Case("resume-history-train-seconds-str", resumed_to_3,
         check=fell_back("history[0].train_seconds"),
         setup=damaged_step2(entry("train_seconds", "slow"))),
    Case("resume-history-without-train-seconds", resumed_to_3,
         check=fell_back("history[0].train_seconds"),
         setup=damaged_step2(lambda m: m["history"][0].pop("train_seconds"))),
    Case("resume-history-train-loss-bool", resumed_to_3,
         check=fell_back("history[1].train_loss"),
         setup=damaged_step2(lambda m: m["history"][1].__setitem__("train_loss", True))),
    Case("resume-history-entry-epoch-out-of-order", resumed_to_3,
         check=fell_back("history[1].epoch"),
         setup=damaged_step2(lambda m: m["history"][1].__setitem__("epoch", 1))),
    Case("resume-epoch-ahead-of-step", resumed_to_3, check=fell_back("'epoch' is 99"),
         setup=damaged_step2(lambda m: m.__setitem__("epoch", 99))),
    Case("resume-epoch-behind-step", resumed_to_3, check=fell_back("'epoch' is 1"),
         setup=damaged_step2(lambda m: m.__setitem__("epoch", 1))),
    Case("resume-all-damaged-refused-nothing-moved", resumed_to_3,
         checkpoint.CheckpointCorruptError, r"no intact checkpoint in ck \(2 damaged, none "
                                            r"changed\); newest: .*history\[0\]\.run",
         setup=lambda ws: (train(2), edit_metadata(2, entry("run", "x")),
                           edit_metadata(1, entry("run", "x")))),
    # a config of another type is another configuration (True is not 1.0), never a crash
    Case("resume-config-lr-true-is-not-1.0", lambda ws: check_same_config(
        {"lr": True}, {"lr": 1.0}, CK), ValueError, r"lr True \(checkpoint\) vs 1\.0 \(now\)"),
    Case("resume-config-hidden-int-is-not-list", lambda ws: check_same_config(
        {"hidden": 4}, {"hidden": [4]}, CK), ValueError, r"hidden 4 \(checkpoint\) vs \[4\]"),
    Case("resume-config-int-lr-same-as-float", lambda ws: check_same_config(
        {"lr": 1, "hidden": [4]}, {"lr": 1.0, "hidden": [4]}, CK)),
    # convert reads MnistConfig from JSON: wrong types refused, naming the field
    Case("convert-config-hidden-int", convert_with(lambda c: c.__setitem__("hidden", 8)),
         ValueError, r"^source: run has a damaged saved config: hidden: expected a list of "
                     r"positive ints, got 8"),
    Case("convert-config-hidden-bools", convert_with(lambda c: c.__setitem__("hidden", [True])),
         ValueError, r"hidden: expected a list of positive ints, got \[True\]"),
    Case("convert-config-lr-true", convert_with(lambda c: c.__setitem__("lr", True)),
         ValueError, r"^source: run has a damaged saved config: lr: expected a float, got True"),
    Case("convert-config-epochs-str", convert_with(lambda c: c.__setitem__("epochs", "5")),
         ValueError, r"epochs: expected an int, got '5'"),
    # ---- item 2: empty arrays and empty states are saved and restored, verified
    Case("save-zero-size-array", lambda ws: (
        checkpoint.save(CK, {"e": jnp.zeros((0, 3)), "w": jnp.arange(2.0)}, step=1),
        checkpoint.restore(CK, like={"e": jnp.ones((0, 3)), "w": jnp.zeros(2)})),
         check=lambda ws, r: (np.testing.assert_array_equal(r[1]["w"], [0.0, 1.0]),
                              jnp.shape(r[1]["e"]) == (0, 3) or pytest.fail(r))),
    Case("save-only-zero-size", lambda ws: (
        checkpoint.save(CK, {"e": np.zeros((4, 0), np.int32)}, step=1),
        checkpoint.restore(CK, like={"e": np.zeros((4, 0), np.int32)})),
         check=lambda ws, r: (r[1]["e"].shape, r[1]["e"].dtype) == ((4, 0), jnp.int32)
         or pytest.fail(r)),
    Case("save-empty-state", lambda ws: (checkpoint.save(CK, {}, step=1),
                                         checkpoint.restore(CK, like={})),
         check=lambda ws, r: r[1] == {} or pytest.fail(r)),
    Case("zero-size-other-shape-refused", lambda ws: (
        checkpoint.save(CK, {"e": jnp.zeros((0, 3))}, step=1),
        checkpoint.restore(CK, like={"e": jnp.zeros((0, 4))})),
         checkpoint.CheckpointMismatchError, r"e has shape \(0, 3\) float32 in the checkpoint"),
    # ---- item 3: the guard covers all that is saved
    Case("finite-check-batchnorm-statistics", bn_fit, NonFiniteError,
         r"epoch 1, step \d+ of that epoch: model_state\['bn'\]\['running_var'\]",
         check=no_checkpoints),
    Case("finite-check-optimizer-state", adam_overflow_fit, NonFiniteError,
         r"epoch 1, step \d+ of that epoch: opt_state\[0\]\.nu\['w'\]", check=no_checkpoints),
    # ---- item 4: a NaN checkpoint is not resumed silently
    # (fit's FiniteCheck refuses it before the first epoch; checkpoint._runs.resume refuses
    # it itself, also when no epoch is left to train)
    Case("resume-nan-checkpoint-refused", lambda ws: train(3, resume=True),
         (NonFiniteError, checkpoint.CheckpointNonFiniteError),
         r"step_00000002 .*holds NaN/Inf in params\['layers'\].*check_finite=False "
         r"\(--no-check-finite\)", setup=nan_checkpoint),
    Case("resume-nan-checkpoint-refused-when-nothing-is-left-to-train",
         lambda ws: train(2, resume=True), checkpoint.CheckpointNonFiniteError,
         r"step_00000002 holds NaN/Inf in params.*check_finite=False \(--no-check-finite\)",
         setup=nan_checkpoint),
    Case("resume-nan-checkpoint-with-the-flag-again", lambda ws: train(
        3, resume=True, check_finite=False), setup=nan_checkpoint,
         check=lambda ws, r: [e["epoch"] for e in r[1]] == [1, 2, 3] or pytest.fail(r)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_metadata_case(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case.setup:
        case.setup(tmp_path)
    if case.error is None:
        result = case.call(tmp_path)
        if case.check:
            case.check(tmp_path, result)
        return
    with pytest.raises(case.error, match="(?s)" + case.match) as info:
        case.call(tmp_path)
    assert "\n" not in str(info.value)
    if case.check:
        case.check(tmp_path, None)


def test_resume_refuses_a_nan_checkpoint_even_when_it_trains_nothing(tmp_path, monkeypatch):
    """``--epochs`` equal to the checkpoint's: no epoch runs, so only the resume can check."""
    from jaxnet.checkpoint._runs import resume

    monkeypatch.chdir(tmp_path)
    nan_checkpoint(tmp_path)
    _, state = model()
    with pytest.raises(checkpoint.CheckpointNonFiniteError,
                       match=r"^resume: ck/step_00000002 holds NaN/Inf in params.*"
                             r"check_finite=False \(--no-check-finite\) again"):
        resume(CK, state, CONFIG, lambda line: None, check_finite=True)
    restored, epoch, _ = resume(CK, state, CONFIG, lambda line: None, check_finite=False)
    assert epoch == 2 and not np.isfinite(np.asarray(restored.params["layers"][0]["kernel"])).all()


def test_zero_size_leaves_keep_the_old_layout(tmp_path):
    """Checkpoints without empty arrays are written as before: every array through orbax."""
    checkpoint.save(tmp_path, {"a": jnp.ones(2), "b": jnp.zeros(3)}, step=1)
    files = json.loads((tmp_path / "step_00000001" / "manifest.json").read_text())["files"]
    assert all(rel.startswith("arrays/") for rel in files) and files, sorted(files)
    restored = checkpoint.restore(tmp_path, like={"a": jnp.zeros(2), "b": jnp.ones(3)})
    assert fingerprint(restored) == fingerprint({"a": jnp.ones(2), "b": jnp.zeros(3)})
    assert jax.tree.structure(restored) == jax.tree.structure({"a": 0, "b": 0})
