"""The adversarial pass of issue 18 item 7: every attack as one row of a table.

Each row is what a learner (or an attacker) writes: the course's PyTorch
spelling pasted in, a value PyTorch refuses, an object used after training
moved on. It runs from a fresh temporary folder with relative paths and
asserts a one-line error (type and message naming the jaxnet way) or a
correct result. Rows marked ``fixed`` failed on the code before this pass
(a silent wrong result, a bare or misleading error); the rest held and stay
as regression rows.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet
import jaxnet.nn.functional as F
from jaxnet import checkpoint, data, interop, losses, nn, optim, train
from jaxnet.checkpoint._runs import config_diff


@dataclass
class Case:
    id: str
    call: Callable[[], Any]
    error: type | None = None  # None: the call must succeed, and ``check`` holds
    match: str = ""
    check: Callable[[Any], None] | None = None
    fixed: bool = False  # failed before this pass


# --------------------------------------------------------------------------- helpers

class Net(nn.Module):
    """The course's shape: ``forward``, ``F.relu``, and an ``fc10`` beside ``fc1``."""

    def __init__(self, rngs):
        self.fc1 = nn.Linear(3, 4, rngs=rngs)
        self.fc2 = nn.Linear(4, 2, rngs=rngs)
        self.fc10 = nn.Linear(2, 2, rngs=rngs)

    def forward(self, x):
        return self.fc10(self.fc2(F.relu(self.fc1(x))))


X = np.random.default_rng(0).random((12, 3)).astype(np.float32)
Y = (X.sum(1) > 1.5).astype(np.int32)
QUIET = {"batch_size": 4, "progress": False, "log": None}


def fresh(optimizer=None):
    model = Net(nn.Rngs(0))
    apply, params, state = nn.split(model)
    optimizer = optimizer or optax.sgd(0.1)
    return model, apply, optimizer, train.TrainState.create(params, optimizer,
                                                            model_state=state)


def fit(loss_fn=losses.cross_entropy, optimizer=None, **kwargs):
    _, apply, opt, state = fresh()
    return train.fit(state, apply, loss_fn, optimizer or opt, data.TensorDataset(X, Y),
                     epochs=kwargs.pop("epochs", 1), **{**QUIET, **kwargs})


def after_step_loop():
    """A ``make_train_step`` loop: the model object is behind, the first state consumed."""
    model, apply, opt, state0 = fresh()
    step = train.make_train_step(apply, losses.cross_entropy, opt)
    state = state0
    for batch in data.DataLoader(data.TensorDataset(X, Y), batch_size=4):
        state, _ = step(state, batch)
    return model, state0, state


def stale_model():
    return after_step_loop()[0]


def consumed_state():
    return after_step_loop()[1]


def with_extra(key, value):
    model = Net(nn.Rngs(0))
    values = nn.state_dict(model)
    values["fc1"] = {**values["fc1"], key: value}
    return model.load_state_dict(values)


def frozen_updates():
    params = nn.split(Net(nn.Rngs(0))).params
    opt = optim.freeze(optax.sgd(1.0), params, "fc1")
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    return {k: float(jnp.abs(v["kernel"]).sum()) for k, v in updates.items()}


def saved_then_loaded():
    model = nn.MLP(3, [4], 2, rngs=0)
    checkpoint.save("sd", nn.state_dict(model), step=0)
    other = nn.MLP(3, [4], 2, rngs=1)
    jaxnet.load("sd", into=other)
    x = jnp.ones((2, 3))
    return model(x), other(x)


def torch_round_trip():
    model = nn.MLP(3, [4], 2, rngs=0)
    interop.save("m.safetensors", interop.to_torch_state_dict(model))
    other = jaxnet.load("m.safetensors", into=nn.MLP(3, [4], 2, rngs=1))
    x = jnp.ones((2, 3))
    return model(x), other(x)


def torch_sd(transform):
    sd = interop.to_torch_state_dict(nn.MLP(3, [4], 2, rngs=0))
    return interop.from_torch_state_dict(transform(sd), nn.MLP(3, [4], 2, rngs=1))


def injected_state():
    params = nn.split(Net(nn.Rngs(0))).params
    return train.TrainState.create(params, optax.inject_hyperparams(optax.adam)(
        learning_rate=1e-3))


def equal_pair(pair):
    assert np.array_equal(np.asarray(pair[0]), np.asarray(pair[1]))


def equal_to(value):
    def check(result):
        assert result == value, result
    return check


def names(modules):
    return [type(m).__name__ for m in modules]


def step_with(loss_fn):
    _, apply, opt, state = fresh()
    return train.make_train_step(apply, loss_fn, opt)(state, (X[:4], Y[:4]))


def torch_habit_dropped_return():
    """``model.load_state_dict(sd)`` in PyTorch: the call's value dropped, the model loaded."""
    source = nn.MLP(3, [4], 2, rngs=0)
    model = nn.MLP(3, [4], 2, rngs=1)
    interop.from_torch_state_dict(interop.to_torch_state_dict(source), model)
    x = jnp.ones((2, 3))
    return source(x), model(x)


def fit_again_on(rows: int, epochs: int = 4):
    """``fit`` 2 epochs on 12 rows (3 batches of 4), then again on ``rows`` rows: the epochs
    trained the second time, and what the log said."""
    _, apply, opt, state = fresh()
    state, _ = train.fit(state, apply, losses.cross_entropy, opt, (X, Y), epochs=2, **QUIET)
    lines = []
    _, history = train.fit(state, apply, losses.cross_entropy, opt, (X[:rows], Y[:rows]),
                           epochs=epochs, **{**QUIET, "log": lines.append})
    return [h["epoch"] for h in history], lines[0]


MSG_OTHER_DATA = ("got state.step 6; continue with the same data and batch size it was "
                  "trained with \\(it trained 2 epochs of 3 steps\\)")


def updated_kernel():
    model, _, state = after_step_loop()
    nn.update(model, state)
    return np.array_equal(model.fc1.kernel[...], state.params["fc1"]["kernel"])


MSG_STALE = "nn.update\\(model, state\\)"
MSG_CONSUMED = "consumed by a train step"

CASES = [
    # ---- PyTorch spellings: works the jaxnet way, or one line naming it ----------------
    Case("relu-inplace-layer", lambda: nn.ReLU(inplace=True)(jnp.array([-1.0, 2.0])).tolist(),
         check=equal_to([0.0, 2.0]), fixed=True),
    Case("relu-inplace-F", lambda: F.relu(jnp.array([-1.0, 2.0]), inplace=True).tolist(),
         check=equal_to([0.0, 2.0]), fixed=True),
    Case("loss-weight-by-position", lambda: nn.CrossEntropyLoss(jnp.array([1.0, 2.0])),
         TypeError, "got PyTorch's weight=.*reduction='none'", fixed=True),
    Case("loss-weight-by-name", lambda: nn.NLLLoss(weight=jnp.ones(2)), TypeError,
         "NLLLoss: .*PyTorch's weight=", fixed=True),
    Case("loss-ignore-index", lambda: nn.CrossEntropyLoss(ignore_index=-100), TypeError,
         "ignore_index=.*mask=", fixed=True),
    Case("loss-pos-weight", lambda: nn.BCEWithLogitsLoss(pos_weight=jnp.ones(1)), TypeError,
         "pos_weight=", fixed=True),
    Case("loss-class-not-instance-in-fit", lambda: fit(nn.CrossEntropyLoss), TypeError,
         "expected an instance.*criterion = nn.CrossEntropyLoss\\(\\)", fixed=True),
    Case("loss-positional-reduction-still-works",
         lambda: float(nn.MSELoss("sum")(jnp.ones(2), jnp.zeros(2))), check=equal_to(2.0)),
    Case("optimizer-not-built", lambda: fit(optimizer=optax.sgd), TypeError,
         "optax.sgd\\(learning_rate=1e-3\\)", fixed=True),
    Case("optimizer-not-built-step", lambda: train.make_train_step(
        fresh()[1], losses.cross_entropy, optax.adam), TypeError, "call it first", fixed=True),
    Case("sequential-layer-class", lambda: nn.Sequential(nn.Linear(3, 2, rngs=nn.Rngs(0)),
                                                         nn.ReLU), TypeError,
         "the class ReLU at position 1; write ReLU\\(\\)", fixed=True),
    Case("sequential-ordereddict", lambda: nn.Sequential(OrderedDict(fc=nn.Linear(
        3, 2, rngs=nn.Rngs(0)))), TypeError, "Sequential\\(\\*layers.values\\(\\)\\)", fixed=True),
    Case("linear-wrong-in-features", lambda: nn.Linear(3, 2, rngs=nn.Rngs(0))(jnp.zeros((2, 4))),
         ValueError, "expected input \\(..., 3\\).*got shape \\(2, 4\\)", fixed=True),
    Case("linear-wrong-in-features-jit", lambda: jax.jit(nn.Linear(3, 2, rngs=nn.Rngs(0)))(
        jnp.zeros((2, 28, 28))), ValueError, "flatten images first", fixed=True),
    Case("flatten-start-dim-out-of-range", lambda: nn.Flatten(start_dim=5)(jnp.zeros((2, 3))),
         IndexError, "start_dim in \\[-2, 2\\).*got 5", fixed=True),
    Case("flatten-start-after-end", lambda: nn.Flatten(2, 1)(jnp.zeros((2, 3, 4))),
         ValueError, "start_dim before end_dim", fixed=True),
    Case("flatten-images", lambda: nn.Flatten()(jnp.zeros((2, 1, 28, 28))).shape,
         check=equal_to((2, 784))),
    Case("load-state-dict-none-leaf", lambda: with_extra("weight", None), ValueError,
         "unexpected \\[\"\\['fc1'\\]\\['weight'\\]\"\\]", fixed=True),
    Case("load-state-dict-torch-name", lambda: with_extra("weight", np.zeros((4, 3))),
         ValueError, "structure differs"),
    Case("load-state-dict-strict-false",
         lambda: Net(nn.Rngs(0)).load_state_dict({}, strict=False), TypeError,
         "from_torch_state_dict"),
    Case("dropout-p-over-one", lambda: nn.Dropout(1.5), ValueError, "in \\[0, 1\\]"),
    Case("F-dropout-without-key", lambda: F.dropout(jnp.ones(3), 0.5), ValueError, "key="),
    Case("F-one-hot-negative", lambda: F.one_hot(jnp.array([-1, 2]), 3), ValueError,
         "in \\[0, 3\\)"),
    Case("F-softmax-float-dim", lambda: F.softmax(jnp.ones((2, 2)), 1.0), TypeError, "int axis"),
    Case("mse-broadcast-n1-vs-n", lambda: nn.MSELoss()(jnp.ones((4, 1)), jnp.arange(4.0)),
         ValueError, "shape of input \\(4, 1\\)"),
    Case("bce-broadcast-n1-vs-n", lambda: F.binary_cross_entropy(jnp.full((4, 1), 0.5),
                                                                 jnp.ones(4)),
         ValueError, "shape of probs"),
    Case("cross-entropy-n1-labels", lambda: F.cross_entropy(jnp.ones((2, 3)),
                                                            jnp.array([[0], [1]])),
         ValueError, "labels must have shape \\(2,\\)"),
    Case("cross-entropy-probability-targets", lambda: F.cross_entropy(
        jnp.ones((1, 2)), jnp.array([[0.5, 0.5]])), TypeError, "argmax"),
    Case("model-named-parameters", lambda: Net(nn.Rngs(0)).named_parameters(), TypeError,
         "nn.split"),
    Case("tensor-dataset-lengths", lambda: data.TensorDataset(X, Y[:5]), ValueError,
         "equal first dimensions"),
    Case("random-split-fractions-over-one", lambda: data.random_split(
        data.TensorDataset(X, Y), [0.5, 0.6]), ValueError, "fractions summing to 1"),
    Case("dataloader-batch-size-none", lambda: data.DataLoader(data.TensorDataset(X, Y),
                                                               batch_size=None),
         ValueError, "batch_size"),
    Case("model-children", lambda: names(Net(nn.Rngs(0)).children()),
         check=equal_to(["Linear", "Linear", "Linear"]), fixed=True),
    Case("model-modules", lambda: names(nn.MLP(3, [4], 2, rngs=0).modules()),
         check=equal_to(["MLP", "Linear", "ReLU", "Linear"]), fixed=True),
    Case("model-named-modules", lambda: [n for n, _ in Net(nn.Rngs(0)).named_modules()],
         check=equal_to(["", "fc1", "fc2", "fc10"]), fixed=True),
    Case("sequential-named-modules", lambda: [n for n, _ in nn.MLP(
        3, [4], 2, rngs=0).named_modules()], check=equal_to(["", "0", "1", "2"]), fixed=True),
    Case("model-double", lambda: Net(nn.Rngs(0)).double(), TypeError,
         "model.double\\(\\): jaxnet .*jax.tree.map\\(lambda a: a.astype\\(jnp.float64\\), "
         "params\\).*jax_enable_x64", fixed=True),
    Case("model-half", lambda: Net(nn.Rngs(0)).half(), TypeError,
         "model.half\\(\\): jaxnet .*a.astype\\(jnp.float16\\)", fixed=True),
    Case("model-float", lambda: Net(nn.Rngs(0)).float(), TypeError,
         "model.float\\(\\): jaxnet .*float32", fixed=True),
    Case("sequential-append", lambda: nn.Sequential(nn.Linear(3, 2, rngs=nn.Rngs(0))).append(
        nn.ReLU()), TypeError, "Sequential.append\\(\\): .*nn.Sequential\\(\\*layers, new\\)",
         fixed=True),
    Case("tensor-dataset-tensors", lambda: [a.tolist() for a in data.TensorDataset(
        X[:2, 0], Y[:2]).tensors], check=equal_to([X[:2, 0].tolist(), Y[:2].tolist()]),
         fixed=True),
    # ---- the learner's objects after training ------------------------------------------
    Case("stale-weight-view", lambda: stale_model().fc1.weight, nn.StaleModelError,
         MSG_STALE, fixed=True),
    Case("stale-kernel-read", lambda: stale_model().fc1.kernel[...], nn.StaleModelError,
         "kernel\\[...\\]: expected the trained weights.*" + MSG_STALE, fixed=True),
    Case("stale-bias-read", lambda: stale_model().fc2.bias[...], nn.StaleModelError,
         MSG_STALE, fixed=True),
    Case("stale-kernel-asarray", lambda: jnp.asarray(stale_model().fc1.kernel),
         nn.StaleModelError, MSG_STALE, fixed=True),
    Case("kernel-read-after-update", updated_kernel, check=equal_to(True)),
    Case("kernel-read-of-a-fresh-model", lambda: Net(nn.Rngs(0)).fc1.kernel[...].shape,
         check=equal_to((3, 4))),
    # 6 steps read as "3 epochs of 2 steps" on 8 rows, 6 epochs on 4 rows: trained on silently
    Case("fit-again-on-fewer-rows", lambda: fit_again_on(8), ValueError,
         "train_data \\(2 steps each\\).*" + MSG_OTHER_DATA, fixed=True),
    Case("fit-again-on-one-batch-per-epoch", lambda: fit_again_on(4), ValueError,
         "train_data \\(1 steps each\\).*" + MSG_OTHER_DATA, fixed=True),
    Case("fit-again-other-batch-size", lambda: train.fit(
        fit(epochs=2)[0], fresh()[1], losses.cross_entropy, optax.sgd(0.1), (X, Y),
        epochs=4, **{**QUIET, "batch_size": 6}), ValueError, MSG_OTHER_DATA, fixed=True),
    Case("fit-again-on-the-same-rows", lambda: fit_again_on(12), check=equal_to(
        ([3, 4], "continuing at epoch 3 (state.step 6 = 2 epochs of 3 steps)"))),
    Case("stale-submodule-call", lambda: stale_model().fc1(jnp.ones((1, 3))),
         nn.StaleModelError, MSG_STALE),
    Case("stale-summary", lambda: nn.summary(stale_model(), (1, 3), print_fn=None),
         nn.StaleModelError, MSG_STALE),
    Case("stale-freeze", lambda: optim.freeze(optax.sgd(0.1), stale_model(), "fc1"),
         nn.StaleModelError, MSG_STALE),
    Case("consumed-checkpoint-save", lambda: checkpoint.save("ck", consumed_state(), step=1),
         train.ConsumedStateError, MSG_CONSUMED, fixed=True),
    Case("consumed-params-checkpoint-save", lambda: checkpoint.save(
        "ck", consumed_state().params, step=1), train.ConsumedStateError, MSG_CONSUMED,
         fixed=True),
    Case("consumed-evaluate", lambda: train.evaluate(
        fresh()[1], consumed_state().params, data.TensorDataset(X, Y)),
         train.ConsumedStateError, MSG_CONSUMED),
    Case("consumed-update", lambda: nn.update(Net(nn.Rngs(0)), consumed_state()),
         train.ConsumedStateError, MSG_CONSUMED),
    Case("update-from-other-architecture", lambda: nn.update(
        nn.Linear(3, 2, rngs=nn.Rngs(0)), after_step_loop()[2]), ValueError,
         "structure differs"),
    Case("fit-epochs-true", lambda: fit(epochs=True), ValueError, "non-negative int"),
    Case("fit-reduction-none-loss", lambda: fit(nn.CrossEntropyLoss(reduction="none")),
         TypeError, "loss_fn: expected a scalar loss.*got shape \\(4,\\).*reduction=\"mean\"",
         fixed=True),
    Case("step-reduction-none-partial", lambda: step_with(functools.partial(
        losses.cross_entropy, reduction="none")), TypeError,
         "loss_fn: expected a scalar loss.*reduction=\"mean\"", fixed=True),
    Case("fit-reduction-sum-loss", lambda: fit(nn.CrossEntropyLoss(reduction="sum"))[1][0][
        "train_loss"] > 0, check=equal_to(True)),
    # ---- optim -------------------------------------------------------------------------
    Case("freeze-fc1-leaves-fc10", frozen_updates,
         check=equal_to({"fc1": 0.0, "fc10": 4.0, "fc2": 8.0})),
    Case("freeze-pattern", lambda: optim.freeze(optax.sgd(0.1), nn.split(Net(nn.Rngs(0))).params,
                                                "fc.*"), ValueError, "it has: 'fc1'"),
    Case("set-lr-bool", lambda: optim.set_learning_rate(injected_state(), True), ValueError,
         "finite number"),
    Case("set-lr-nan", lambda: optim.set_learning_rate(injected_state(), float("nan")),
         ValueError, "finite number"),
    Case("lr-of-optimizer-not-state", lambda: optim.learning_rate(
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)), TypeError, "TrainState"),
    # ---- files: load, checkpoint, interop ----------------------------------------------
    Case("load-state-dict-checkpoint", saved_then_loaded, check=equal_pair),
    Case("load-safetensors-round-trip", torch_round_trip, check=equal_pair),
    Case("load-into-class", lambda: jaxnet.load("x", into=nn.MLP), TypeError, "into:"),
    Case("load-npz", lambda: (np.savez("w.npz", a=np.zeros(2)),
                              jaxnet.load("w.npz", into=nn.MLP(3, [4], 2, rngs=0))),
         ValueError, "not a jaxnet checkpoint folder"),
    Case("torch-sd-return-dropped", torch_habit_dropped_return, check=equal_pair, fixed=True),
    Case("torch-sd-ddp-prefix", lambda: torch_sd(lambda sd: {"module." + k: v
                                                             for k, v in sd.items()}),
         ValueError, "module\\."),
    Case("torch-sd-transposed", lambda: torch_sd(lambda sd: {k: v.T for k, v in sd.items()}),
         ValueError, "transposed\\?"),
    Case("resume-other-precision-names-the-default", lambda: config_diff(
        {"precision": "bf16", "lr": 0.1}, {"lr": 0.1}),
         check=equal_to("precision 'bf16' (checkpoint) vs the default (now)"), fixed=True),
    Case("checkpoint-step-float", lambda: checkpoint.save("ck", {"w": np.ones(2)}, step=1.0),
         ValueError, "non-negative int"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_attack(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if case.error is None:
        result = case.call()
        if case.check is not None:
            case.check(result)
        return
    with pytest.raises(case.error, match=case.match) as info:
        case.call()
    assert "\n" not in str(info.value), str(info.value)  # one line


def test_there_are_at_least_50_attacks_19_of_them_fixed():
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) >= 50 and sum(c.fixed for c in CASES) >= 19
