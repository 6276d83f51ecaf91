"""``jaxnet.optim``: freeze a layer and change the learning rate, surviving checkpoints."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import checkpoint, losses, nn, optim
from jaxnet._tree import fingerprint
from jaxnet.callbacks import Callback, NonFiniteError
from jaxnet.data import ArrayDataset, DataLoader
from jaxnet.train import TrainState, fit, make_train_step

X = np.random.default_rng(1).normal(size=(48, 2)).astype(np.float32)
Y = (X.sum(axis=1) > 0).astype(np.int32)


class NeuralNetwork(nn.Module):
    """The course's toy network (2 -> 30 -> 20 -> 2), with its attribute names."""

    def __init__(self, rngs):
        self.fc1 = nn.Linear(2, 30, rngs=rngs)
        self.fc2 = nn.Linear(30, 20, rngs=rngs)
        self.fc3 = nn.Linear(20, 2, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.fc1(x))
        x = jax.nn.relu(self.fc2(x))
        return self.fc3(x)


def adam(lr=1e-2):
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


def updates_of(optimizer, params):
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates)


@pytest.mark.parametrize("frozen", ["fc1", ["fc1"], ("fc1.weight", "fc1.bias"),
                                    "fc1.kernel"])
def test_freeze_names_as_pytorch_prints_them(frozen):
    _, params, _ = nn.split(NeuralNetwork(nn.Rngs(0)))
    moving = updates_of(optim.freeze(optax.sgd(0.1), params, frozen), params)
    assert moving["fc2"] == {"kernel": True, "bias": True}
    if frozen == "fc1.kernel":
        assert moving["fc1"] == {"kernel": False, "bias": True}
    else:
        assert moving["fc1"] == {"kernel": False, "bias": False}
    weight_only = updates_of(optim.freeze(optax.sgd(0.1), params, "fc1.weight"), params)
    assert weight_only["fc1"] == {"kernel": False, "bias": True}


@pytest.mark.parametrize("frozen", ["0", "layers.0", "0.weight", "layers.0.kernel"])
def test_freeze_a_sequential_layer_from_params_or_model(frozen):
    model = nn.MLP(2, [4, 3], 2, rngs=0)
    _, params, _ = nn.split(model)
    for source in (params, model):
        moving = updates_of(optim.freeze(optax.sgd(0.1), source, frozen), params)
        assert moving["layers"][0]["kernel"] is False
        assert moving["layers"][2]["kernel"] is True and moving["layers"][4]["bias"] is True


def test_unknown_names_list_the_valid_ones():
    _, params, _ = nn.split(NeuralNetwork(nn.Rngs(0)))
    with pytest.raises(ValueError, match=r"frozen: expected a layer or parameter of the model, "
                                         r"got 'fc4'; it has: 'fc1', 'fc2', 'fc3', "
                                         r"'fc1.bias', 'fc1.weight'"):
        optim.freeze(optax.sgd(0.1), params, ["fc1", "fc4"])
    with pytest.raises(ValueError, match="got 'fc'"):  # a prefix of a name is not a name
        optim.freeze(optax.sgd(0.1), params, "fc")
    with pytest.raises(TypeError, match="frozen: expected a layer name such as 'fc1'"):
        optim.freeze(optax.sgd(0.1), params, [1])
    with pytest.raises(TypeError, match="optimizer: expected an optax GradientTransformation"):
        optim.freeze("adam", params, "fc1")


def test_learning_rate_needs_inject_hyperparams():
    _, params, _ = nn.split(NeuralNetwork(nn.Rngs(0)))
    state = TrainState.create(params, optax.adam(1e-3))
    message = ("state: its optimizer has no learning_rate hyperparameter; build it with "
               "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)")
    for call in (lambda: optim.learning_rate(state), lambda: optim.set_learning_rate(state, 0.1)):
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value) == message
    with pytest.raises(TypeError, match="state: expected a TrainState"):
        optim.learning_rate(params)


def test_set_learning_rate_is_pure_and_reaches_nested_optimizers():
    _, params, _ = nn.split(NeuralNetwork(nn.Rngs(0)))
    optimizer = optim.freeze(optax.chain(optax.clip_by_global_norm(1.0), adam(1e-2)), params,
                             "fc1")
    state = TrainState.create(params, optimizer)
    assert optim.learning_rate(state) == 0.01
    new = optim.set_learning_rate(state, 1e-4)
    assert optim.learning_rate(new) == 0.0001 and optim.learning_rate(state) == 0.01
    for bad in (-1.0, float("nan"), "0.1", True, np.ones(2)):
        with pytest.raises(ValueError, match="lr: expected a finite number >= 0"):
            optim.set_learning_rate(state, bad)
    scheduled = TrainState.create(params, optax.inject_hyperparams(optax.adam)(
        learning_rate=optax.linear_schedule(1e-2, 1e-3, 10)))
    assert optim.learning_rate(scheduled) == 0.01
    with pytest.raises(ValueError, match="its learning rate follows a schedule"):
        optim.set_learning_rate(scheduled, 1e-3)


def test_the_new_rate_is_the_one_used():
    """lr 0 after the change: the next steps leave every parameter as it was."""
    apply, params, model_state = nn.split(NeuralNetwork(nn.Rngs(0)))
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    step = make_train_step(apply, losses.cross_entropy, optimizer)
    state = TrainState.create(params, optimizer, model_state=model_state)
    state, _ = step(state, (X, Y))
    state = optim.set_learning_rate(state, 0.0)
    before = fingerprint(state.params)
    state, _ = step(state, (X, Y))
    assert fingerprint(state.params) == before


def _setup(lr=1e-2):
    apply, params, model_state = nn.split(NeuralNetwork(nn.Rngs(0)))
    optimizer = optim.freeze(adam(lr), params, "fc1")
    state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
    return apply, optimizer, state, jax.tree.map(np.asarray, params)


def _fit(state, apply, optimizer, epochs, **kw):
    return fit(state, apply, losses.cross_entropy, optimizer, (X, Y), epochs=epochs,
               batch_size=16, seed=0, progress=False, log=None, **kw)[0]


def test_freeze_and_rate_survive_a_fit_checkpoint_and_resume(tmp_path):
    apply, optimizer, state, initial = _setup()
    state = optim.set_learning_rate(state, 3e-3)
    whole = _fit(state, apply, optimizer, 3)
    apply, optimizer, state, _ = _setup()
    _fit(optim.set_learning_rate(state, 3e-3), apply, optimizer, 2, checkpoint_dir="run")
    apply, optimizer, fresh, _ = _setup()  # as a new process builds it: lr 1e-2 again
    resumed = _fit(fresh, apply, optimizer, 3, checkpoint_dir="run", resume=True)
    assert optim.learning_rate(resumed) == 0.003
    assert fingerprint(resumed) == fingerprint(whole)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(whole.params["fc1"][name]),
                                      initial["fc1"][name])
    assert not np.array_equal(np.asarray(whole.params["fc2"]["kernel"]), initial["fc2"]["kernel"])


def test_a_rate_changed_mid_run_survives_a_checkpoint_exactly(tmp_path):
    """The course's loop: epoch 1, lower the rate, checkpoint; a fresh process resumes."""
    loader = DataLoader(ArrayDataset(X, Y), batch_size=16, shuffle=True, seed=0)

    def epoch(state, step, e):
        for batch in loader.iter_epoch(e):
            state, _ = step(state, batch)
        return state

    apply, optimizer, state, initial = _setup()
    step = make_train_step(apply, losses.cross_entropy, optimizer)
    state = epoch(state, step, 0)
    state = optim.set_learning_rate(state, 1e-3)
    checkpoint.save("ck", state, step=1)
    whole = epoch(state, step, 1)

    apply, optimizer, template, _ = _setup()
    restored = checkpoint.restore("ck", like=template)
    assert optim.learning_rate(restored) == 0.001
    step = make_train_step(apply, losses.cross_entropy, optimizer)
    resumed = epoch(restored, step, 1)
    assert fingerprint(resumed) == fingerprint(whole)
    np.testing.assert_array_equal(np.asarray(resumed.params["fc1"]["kernel"]),
                                  initial["fc1"]["kernel"])


class LowerRateAt(Callback):
    """The course's scheduler habit as a callback: a new rate from epoch ``at`` on."""

    def __init__(self, at, lr):
        self.at, self.lr, self.seen = at, lr, []

    def on_epoch_begin(self, run, epoch, state):
        self.seen.append((epoch, optim.learning_rate(state)))
        if epoch == self.at:
            return optim.set_learning_rate(state, self.lr)
        return None


def test_a_callback_changes_the_rate_and_a_resume_is_bit_identical(tmp_path):
    """on_epoch_begin returns the new state and fit trains with it; checkpoint, resume."""
    apply, optimizer, state, _ = _setup()
    plain = _fit(state, apply, optimizer, 3)
    apply, optimizer, state, _ = _setup()
    lower = LowerRateAt(2, 1e-4)
    whole = _fit(state, apply, optimizer, 3, callbacks=[lower])
    assert lower.seen == [(1, 0.01), (2, 0.01), (3, 0.0001)]
    assert optim.learning_rate(whole) == 0.0001
    assert fingerprint(whole.params) != fingerprint(plain.params)  # the rate really changed
    # after epoch 2 (the change made), and after epoch 1 (the resume makes it)
    for stop, folder in ((2, "after2"), (1, "after1")):
        apply, optimizer, state, _ = _setup()
        _fit(state, apply, optimizer, stop, checkpoint_dir=folder,
             callbacks=[LowerRateAt(2, 1e-4)])
        apply, optimizer, fresh, _ = _setup()
        resumed = _fit(fresh, apply, optimizer, 3, checkpoint_dir=folder, resume=True,
                       callbacks=[LowerRateAt(2, 1e-4)])
        assert fingerprint(resumed) == fingerprint(whole), stop


def test_the_rate_a_callback_sets_reaches_the_model_and_the_finite_check(tmp_path):
    """The built-in FiniteCheck replays from the state the epoch trained from (the new rate):
    a rate that blows up at epoch 2 is named at epoch 2, step 0, not 'after the epoch'."""

    apply, optimizer, state, _ = _setup()
    with pytest.raises(NonFiniteError, match=r"epoch 2, step \d+ of that epoch: (loss|grad)"):
        _fit(state, apply, optimizer, 2, callbacks=[LowerRateAt(2, 1e30)])


@pytest.mark.parametrize("returned, match", [
    (True, r"on_epoch_begin: expected None or the new TrainState, got bool"),
    ("state", r"on_epoch_begin: expected None or the new TrainState, got str"),
])
def test_a_hook_returning_something_else_is_refused(returned, match):

    class Returns(Callback):
        def on_epoch_begin(self, run, epoch, state):
            return returned

    apply, optimizer, state, _ = _setup()
    with pytest.raises(TypeError, match=match):
        _fit(state, apply, optimizer, 1, callbacks=[Returns()])


def test_a_hook_returning_another_optimizers_state_is_refused():

    class Swap(Callback):
        def on_epoch_begin(self, run, epoch, state):
            return state.replace(opt_state=optax.sgd(0.1).init(state.params))

    apply, optimizer, state, _ = _setup()
    with pytest.raises(ValueError, match=r"on_epoch_begin: expected a state of the same "
                                         r"structure as the one it received"):
        _fit(state, apply, optimizer, 1, callbacks=[Swap()])


# The learner's habits around fit that were silent (found in the notebook-like session of
# tests/test_learner_session.py), as a table in the style of tests/test_faults.py: each row
# runs one call and expects one line naming the jaxnet way (or, error None, a result).
@dataclasses.dataclass
class Case:
    id: str
    call: Callable[[], Any]
    error: type[BaseException] | None = TypeError
    match: str = ""
    check: Callable[[Any], bool] | None = None
    setup: Callable[[], None] | None = None


class Returns(Callback):
    """A callback whose hook ``hook`` returns ``make(state)`` (or ``make()``)."""

    def __init__(self, hook, make):
        self.hook, self.make = hook, make

    def on_epoch_end(self, run, epoch, state, logs):
        return self.make(state) if self.hook == "on_epoch_end" else None

    def on_batch_end(self, run, batch, loss):
        return self.make(None) if self.hook == "on_batch_end" else None


def _fit_with(*callbacks, epochs=3, optimizer=None, first=None, apply_=None):
    apply, opt, state, _ = _setup()
    optimizer = opt if optimizer is None else optimizer
    return fit(state if first is None else first, apply if apply_ is None else apply_,
               losses.cross_entropy, optimizer, (X, Y), epochs=epochs, batch_size=16, seed=0,
               progress=False, log=None, callbacks=list(callbacks))


def _with_attribute(name, value):
    optimizer = adam(1e-2)
    setattr(optimizer, name, value)  # optax's NamedTuple takes it and never reads it
    return optimizer


FIT_HABITS = [
    # Before: the returned TrainState is truthy, so fit stopped after epoch 1 of 3, silently.
    Case("on_epoch_end returns a new state (a scheduler's habit)",
         lambda: _fit_with(Returns("on_epoch_end",
                                   lambda s: optim.set_learning_rate(s, 1e-3))),
         match=r"^on_epoch_end: expected True \(stop\), False or None, got TrainState from "
               r"Returns\.on_epoch_end; .*on_epoch_begin"),
    Case("on_epoch_end returns a number",
         lambda: _fit_with(Returns("on_epoch_end", lambda s: 0.5)),
         match=r"^on_epoch_end: expected True \(stop\), False or None, got float"),
    Case("on_epoch_end returns True: stops (the protocol)",
         lambda: _fit_with(Returns("on_epoch_end", lambda s: True)), error=None,
         check=lambda out: len(out[1]) == 1),
    Case("on_epoch_end returns numpy's True: stops",
         lambda: _fit_with(Returns("on_epoch_end", lambda s: np.bool_(True))), error=None,
         check=lambda out: len(out[1]) == 1),
    # Before: ignored (on the scan path the batches have run when the hook is called).
    Case("on_batch_end returns a value",
         lambda: _fit_with(Returns("on_batch_end", lambda s: 1)),
         match=r"^on_batch_end: expected None, got int from Returns\.on_batch_end; .*"
               r"on_epoch_begin"),
    # Before: fit trained with the old rate, silently.
    Case("optimizer.learning_rate = 0.0 (opt.lr habit)",
         lambda: _fit_with(optimizer=_with_attribute("learning_rate", 0.0)),
         match=r"^optimizer\.learning_rate: .*optim\.set_learning_rate\(state, lr\)"),
    Case("optimizer.lr = 0.1",
         lambda: _fit_with(optimizer=_with_attribute("lr", 0.1)),
         match=r"^optimizer\.lr: .*optim\.set_learning_rate"),
    Case("optimizer.lr = 0.1, then make_train_step",
         lambda: make_train_step(_setup()[0], losses.cross_entropy, _with_attribute("lr", 0.1)),
         match=r"^optimizer\.lr: "),
    # Before: AttributeError: 'NeuralNetwork' object has no attribute 'params'.
    Case("fit(model, ...) (Keras's model.fit habit)",
         lambda: _fit_with(first=NeuralNetwork(nn.Rngs(0))),
         match=r"^state: expected a TrainState, got the model NeuralNetwork itself; "
               r"write apply, params, model_state = nn.split\(model\)"),
    Case("fit(params, ...)",
         lambda: _fit_with(first=nn.split(NeuralNetwork(nn.Rngs(0))).params),
         match=r"^state: expected a TrainState, got dict; "),
]


@pytest.mark.parametrize("case", FIT_HABITS, ids=[c.id for c in FIT_HABITS])
def test_fit_habits_fail_loudly(case):
    if case.setup:
        case.setup()
    if case.error is None:
        out = case.call()
        assert case.check is None or case.check(out)
        return
    with pytest.raises(case.error, match=case.match) as e:
        case.call()
    assert "\n" not in str(e.value)
