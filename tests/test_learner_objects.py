"""The learner's objects tell the truth: the model you hold is the model you trained.

Issue 17, items 1 (the trained model comes back), 2 (notebook re-runs) and
``TrainState``'s short repr: the course's toy network and an MNIST MLP with
BatchNorm and Dropout, trained, saved as the docs say, reloaded in a fresh
process; the ``make_train_step`` loop's stale model; cells run twice.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import checkpoint, datasets, interop, losses, nn
from jaxnet.train import (
    ConsumedStateError,
    TrainState,
    evaluate,
    fit,
    make_epoch,
    make_epoch_runner,
    make_train_step,
)


class NeuralNetwork(nn.Module):
    """The course's toy network (chapter 5), as a learner pastes it."""

    def __init__(self, num_inputs, num_outputs, *, rngs):
        self.layers = nn.Sequential(
            nn.Linear(num_inputs, 30, rngs=rngs), nn.ReLU(),
            nn.Linear(30, 20, rngs=rngs), nn.ReLU(),
            nn.Linear(20, num_outputs, rngs=rngs))

    def __call__(self, x):
        return self.layers(x)


class MnistNet(nn.Module):
    """An MNIST MLP with BatchNorm and Dropout: its state dict has running statistics."""

    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(784, 64, rngs=rngs)
        self.bn = nn.BatchNorm1d(64)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


def toy_data():
    x = np.array([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]], np.float32)
    return x, np.array([0, 0, 0, 1, 1])


def mnist_small(n=3000):
    x, y = datasets.load_mnist("train")
    return (x[:n].reshape(n, -1).astype(np.float32) / 255.0), y[:n].astype(np.int32)


def fit_quiet(model, data, epochs, optimizer, **kw):
    apply, params, model_state = nn.split(model)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
    return apply, fit(state, apply, losses.cross_entropy, optimizer, data, epochs=epochs,
                      progress=False, log=None, **kw)


LOAD = """
import json, sys
import jax, numpy as np
sys.path.insert(0, {tests!r})
from test_learner_objects import {cls}, {data}
from jaxnet import checkpoint, nn
from jaxnet.train import evaluate
model = {build}
model.eval()
nn.load_state_dict(model, checkpoint.restore({folder!r}, like=nn.state_dict(model)))
x, y = {data}()
apply, params, state = nn.split(model)
json.dump({{"pred": np.asarray(model(x)).tolist(),
           "accuracy": evaluate(apply, params, (x, y), model_state=state)["accuracy"]}},
          open({out!r}, "w"))
"""


def reload_in_fresh_process(tmp_path, folder, cls, data, build):
    out = tmp_path / "out.json"
    code = LOAD.format(tests=os.path.dirname(__file__), cls=cls, data=data, build=build,
                       folder=str(folder), out=str(out))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300,
                   env={**os.environ, "JAX_PLATFORMS": "cpu"})
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", ["toy", "mnist"])
def test_fit_puts_the_trained_model_back_and_the_saved_model_reloads_in_a_fresh_process(
        tmp_path, case):
    if case == "toy":
        model, data, cls, build = NeuralNetwork(2, 2, rngs=nn.Rngs(0)), toy_data(), \
            "NeuralNetwork", "NeuralNetwork(2, 2, rngs=nn.Rngs(1))"
        apply, (state, _) = fit_quiet(model, data, 30, optax.sgd(0.5), batch_size=2)
        loader_fn = "toy_data"
    else:
        model, data, cls, build = MnistNet(rngs=nn.Rngs(0)), mnist_small(), "MnistNet", \
            "MnistNet(rngs=nn.Rngs(1))"
        apply, (state, _) = fit_quiet(model, data, 2, optax.adam(1e-3), batch_size=64)
        loader_fn = "mnist_small"
        assert float(jnp.abs(state.model_state["bn"]["running_mean"]).sum()) > 0
    x, y = data
    trained, _ = apply(state.params, state.model_state, x)
    model.eval()  # as in PyTorch: Dropout off, BatchNorm's running statistics
    np.testing.assert_array_equal(model(x), trained)  # model(x) is the trained model
    accuracy = evaluate(apply, state, data)["accuracy"]
    assert accuracy > (0.99 if case == "toy" else 0.8)
    # saved as the cheat sheet says, loaded in a fresh process: the same model
    checkpoint.save(tmp_path / "model", nn.state_dict(model), step=int(state.step))
    got = reload_in_fresh_process(tmp_path, tmp_path / "model", cls, loader_fn, build)
    np.testing.assert_array_equal(np.asarray(got["pred"], np.float32), np.asarray(trained))
    assert got["accuracy"] == accuracy


def test_make_train_step_loop_leaves_a_stale_model_that_refuses_until_update():
    model = MnistNet(rngs=nn.Rngs(0))
    apply, params, model_state = nn.split(model)
    optimizer = optax.adam(1e-3)
    state = TrainState.create(params, optimizer, model_state=model_state)
    step = make_train_step(apply, losses.cross_entropy, optimizer)
    x, y = mnist_small(256)
    for i in range(0, 256, 64):
        state, _ = step(state, (x[i:i + 64], y[i:i + 64]))
    for use in (lambda: model(x), lambda: nn.state_dict(model), lambda: nn.split(model),
                lambda: nn.summary(model, (1, 784)),
                lambda: checkpoint.save("never", nn.state_dict(model), step=4),
                lambda: interop.to_torch_state_dict(model)):
        with pytest.raises(nn.StaleModelError, match=r"nn.update\(model, state\)"):
            use()
    assert not os.path.exists("never")
    nn.update(model, state)
    want, _ = apply(state.params, state.model_state, x)
    model.eval()
    np.testing.assert_array_equal(model(x), want)
    np.testing.assert_array_equal(nn.state_dict(model)["bn"]["running_mean"],
                                  state.model_state["bn"]["running_mean"])
    # the model holds copies: the next (donating) step does not delete the model's arrays
    state, _ = step(state, (x[:64], y[:64]))
    nn.update(model, state)
    assert not model.fc1.kernel[...].is_deleted()


def test_the_epoch_scan_and_runner_mark_the_model_stale_too():
    model = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
    apply, params, _ = nn.split(model)
    x, y = (jnp.asarray(a) for a in toy_data())
    state = TrainState.create(params, optax.sgd(0.1))
    state, _ = make_epoch(apply, losses.cross_entropy, optax.sgd(0.1))(
        state, (x, y), jnp.arange(4, dtype=jnp.int32).reshape(2, 2), jnp.ones((2, 2), bool))
    with pytest.raises(nn.StaleModelError):
        model(x)
    nn.load_state_dict(model, state.params)  # load_state_dict clears it too
    from jaxnet.data import ArrayDataset, DataLoader
    run = make_epoch_runner(apply, losses.cross_entropy, optax.sgd(0.1),
                            DataLoader(ArrayDataset(*toy_data()), batch_size=2))
    state, _, _ = run(state, 0)
    with pytest.raises(nn.StaleModelError):
        model(x)


def test_update_accepts_state_params_or_state_dict_and_checks_like_load_state_dict():
    model = MnistNet(rngs=nn.Rngs(0))
    other = MnistNet(rngs=nn.Rngs(1))
    sd = nn.state_dict(other)
    nn.update(model, sd)
    np.testing.assert_array_equal(nn.state_dict(model)["fc1"]["kernel"], sd["fc1"]["kernel"])
    assert nn.state_dict(model)["fc1"]["kernel"] is not sd["fc1"]["kernel"]  # copied
    _, params, model_state = nn.split(NeuralNetwork(2, 2, rngs=nn.Rngs(3)))
    with pytest.raises(ValueError, match="structure differs"):
        nn.update(model, params)
    toy = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
    as64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    nn.update(toy, as64)  # a params dict, cast to the model's dtypes
    assert nn.state_dict(toy)["layers"]["layers"][0]["kernel"].dtype == jnp.float32
    bad = jax.tree.map(lambda a: a, params)
    bad["layers"]["layers"][0]["kernel"] = np.zeros((3, 30), np.float32)
    with pytest.raises(ValueError, match=r"expected shape \(2, 30\), got \(3, 30\)"):
        nn.update(toy, bad)
    with pytest.raises(TypeError, match="source: expected a TrainState"):
        nn.update(toy, [1, 2])


def test_apply_remembers_its_model_weakly_and_is_a_static_jit_argument():
    import gc
    import weakref
    model = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
    apply, params, state = nn.split(model)
    assert apply.model is model
    f = jax.jit(lambda a, p, x: a(p, {}, x)[0], static_argnums=0)
    assert f(apply, params, jnp.ones((1, 2))).shape == (1, 2)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and apply.model is None  # apply keeps no model alive


def test_fit_writes_back_after_an_early_stop_and_leaves_the_model_when_it_raises():
    from jaxnet.callbacks import Callback

    class StopAfterOne(Callback):
        def on_epoch_end(self, run, epoch, state, logs):
            return True

    class Boom(Callback):
        def on_epoch_end(self, run, epoch, state, logs):
            raise KeyboardInterrupt

    model = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
    apply, (state, history) = fit_quiet(model, toy_data(), 5, optax.sgd(0.1), batch_size=2,
                                        callbacks=[StopAfterOne()])
    assert len(history) == 1
    np.testing.assert_array_equal(nn.state_dict(model)["layers"]["layers"][0]["kernel"],
                                  state.params["layers"]["layers"][0]["kernel"])
    before = nn.state_dict(model)
    with pytest.raises(KeyboardInterrupt):
        fit(state, apply, losses.cross_entropy, optax.sgd(0.1), toy_data(), epochs=5,
            batch_size=2, progress=False, log=None, callbacks=[Boom()])
    for a, b in zip(jax.tree.leaves(nn.state_dict(model)), jax.tree.leaves(before),
                    strict=True):
        np.testing.assert_array_equal(a, b)


NOTEBOOK = """
import jax, jax.numpy as jnp, numpy as np, optax
from jaxnet import nn, losses
from jaxnet.train import TrainState, fit, evaluate, make_train_step, ConsumedStateError
x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int32)
model = nn.MLP(4, [8], 2, rngs=0)
apply, params, model_state = nn.split(model)
opt = optax.adam(1e-2)
state = TrainState.create(params, opt, model_state=model_state)
# cell: fit, run twice from the same state
a, _ = fit(state, apply, losses.cross_entropy, opt, (x, y), epochs=2, batch_size=16,
           progress=False, log=None)
b, _ = fit(state, apply, losses.cross_entropy, opt, (x, y), epochs=2, batch_size=16,
           progress=False, log=None)
assert all(bool(jnp.array_equal(p, q)) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
# cell: evaluate after fit, with the state given and the state returned
print("eval", evaluate(apply, state, (x, y))["accuracy"], evaluate(apply, a, (x, y))["accuracy"])
# cell: a step loop, then the cell run again on the consumed state
step = make_train_step(apply, losses.cross_entropy, opt)
s2, _ = step(a, (x[:16], y[:16]))
for again in (lambda: step(a, (x[:16], y[:16])), lambda: evaluate(apply, a, (x, y)),
              lambda: fit(a, apply, losses.cross_entropy, opt, (x, y), epochs=3,
                          batch_size=16, progress=False, log=None),
              lambda: nn.update(model, a)):
    try:
        again()
        raise SystemExit("no error on a consumed state")
    except ConsumedStateError as e:
        assert "state, metrics = step(state, batch)" in str(e) or "fit(state" in str(e), e
print(repr(s2)[:60])
print("done")
"""


def test_notebook_cells_run_twice_work_or_name_the_consumed_state_never_xla(tmp_path):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(NOTEBOOK)], text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr
    assert "done" in proc.stdout
    for xla in ("common_pjrt_client", "Buffer has been deleted", "Array has been deleted"):
        assert xla not in proc.stderr + proc.stdout


def test_consumed_state_raises_one_jaxnet_error_naming_the_line_to_write():
    apply, params, _ = nn.split(NeuralNetwork(2, 2, rngs=nn.Rngs(0)))
    state = TrainState.create(params, optax.sgd(0.1))
    step = make_train_step(apply, losses.cross_entropy, optax.sgd(0.1))
    batch = (jnp.ones((2, 2)), jnp.array([0, 1]))
    new, _ = step(state, batch)
    with pytest.raises(ConsumedStateError,
                       match=r"^state: this TrainState was consumed by a train step .*"
                             r"`state, metrics = step\(state, batch\)`"):
        step(state, batch)
    # only params consumed (a state rebuilt around them): still ours, not XLA's
    mixed = new.replace(params=state.params)
    with pytest.raises(ConsumedStateError):
        step(mixed, batch)
    assert "consumed" in repr(state)


def test_train_state_repr_is_one_short_line():
    model = nn.MLP(784, [512, 256], 10, rngs=0)
    _, params, model_state = nn.split(model)
    state = TrainState.create(params, optax.adam(1e-3), model_state=model_state)
    text = repr(state)
    assert len(text) < 200 and "\n" not in text, text
    assert text.startswith("TrainState(step=0, params=535,818 parameters in 6 arrays, "), text
    assert str(state) == text
