"""The course's PyTorch spellings, pasted in: each works (result checked) or raises naming
the jaxnet counterpart (issue 17 items 5 and 7). Rows come from issue 17 and
docs/pytorch_cheatsheet.md; the last rows are spellings on objects jaxnet does not own."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnet.nn.functional as F
from jaxnet import losses, nn
from jaxnet.data import ArrayDataset, TensorDataset
from jaxnet.train import TrainState, fit, make_train_step


# The course's toy network, as the course writes it (forward, super().__init__()),
# with the one change the cheat sheet lists: layers take rngs.
class NeuralNetwork(nn.Module):
    def __init__(self, num_inputs, num_outputs, *, rngs):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(num_inputs, 30, rngs=rngs), nn.ReLU(),
            nn.Linear(30, 20, rngs=rngs), nn.ReLU(),
            nn.Linear(20, num_outputs, rngs=rngs))

    def forward(self, x):
        logits = self.layers(x)
        return logits


# The course's MNISTNet (chapter 9), with F.
class MNISTNet(nn.Module):
    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(28 * 28, 64, rngs=rngs)
        self.fc2 = nn.Linear(64, 32, rngs=rngs)
        self.fc3 = nn.Linear(32, 10, rngs=rngs)

    def forward(self, x):
        x = x.reshape(-1, 28 * 28)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


X_TRAIN = np.array([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]],
                   np.float32)
Y_TRAIN = np.array([0, 0, 0, 1, 1])


def test_forward_class_is_callable_and_trains_with_fit():
    model = NeuralNetwork(2, 2, rngs=nn.Rngs(123))
    assert model(jnp.asarray(X_TRAIN)).shape == (5, 2)
    apply, params, state = nn.split(model)
    out, _ = apply(params, state, jnp.asarray(X_TRAIN))
    np.testing.assert_array_equal(out, model(jnp.asarray(X_TRAIN)))
    optimizer = optax.sgd(0.5)
    ts = TrainState.create(params, optimizer, model_state=state, seed=0)
    ts, history = fit(ts, apply, nn.CrossEntropyLoss(), optimizer,
                      TensorDataset(X_TRAIN, Y_TRAIN), epochs=3, batch_size=2, log=None,
                      progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    out, _ = apply(ts.params, ts.model_state, jnp.asarray(X_TRAIN))
    np.testing.assert_array_equal(jnp.argmax(out, 1), Y_TRAIN)   # the course's 100% on train


def test_forward_subclass_override_and_mnistnet_with_nll():
    class Wider(NeuralNetwork):
        def forward(self, x):
            return 2.0 * self.layers(x)

    x = jnp.asarray(X_TRAIN)
    base, wide = NeuralNetwork(2, 2, rngs=nn.Rngs(0)), Wider(2, 2, rngs=nn.Rngs(0))
    np.testing.assert_allclose(wide(x), 2.0 * base(x), rtol=1e-6)

    model = MNISTNet(rngs=nn.Rngs(0))
    apply, params, state = nn.split(model)
    optimizer = optax.adam(0.01)
    step = make_train_step(apply, nn.NLLLoss(), optimizer)
    ts = TrainState.create(params, optimizer, model_state=state, seed=0)
    images = jax.random.uniform(jax.random.key(0), (8, 1, 28, 28))
    ts, metrics = step(ts, (images, jnp.arange(8)))
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0


def test_nn_functional_is_pytorchs_F_and_the_old_call_warns():
    import jaxnet.nn.functional as F2

    assert F2 is nn.functional is F
    model = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
    with pytest.warns(DeprecationWarning, match=r"nn.functional\(model\) is now nn.split"):
        apply, params, state = nn.functional(model)
    for old, new in zip(jax.tree.leaves(params), jax.tree.leaves(nn.split(model).params),
                        strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_F_activations_match_jax(name):
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(getattr(F, name)(x), getattr(jax.nn, name, jnp.tanh)(x)
                               if name != "tanh" else jnp.tanh(x), rtol=1e-6)


def test_F_softmax_needs_dim_and_matches():
    x = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(F.softmax(x, dim=1).sum(1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(F.log_softmax(x, 1), jax.nn.log_softmax(x, axis=1), rtol=1e-6)
    np.testing.assert_allclose(F.softmax(x, dim=0).sum(0), [1.0, 1.0, 1.0], rtol=1e-6)
    for fn in (F.softmax, F.log_softmax):
        with pytest.raises(TypeError, match=r"expected dim=.*dim=1"):
            fn(x)
    with pytest.raises(ValueError, match=r"expected dim in \[-2, 2\)"):
        F.softmax(x, dim=2)


def test_F_one_hot():
    np.testing.assert_array_equal(F.one_hot(jnp.array([0, 2, 1]), 3),
                                  np.eye(3, dtype=np.int32)[[0, 2, 1]])
    assert F.one_hot(np.array([1, 3])).shape == (2, 4)          # num_classes=-1: max + 1
    with pytest.raises(ValueError, match=r"labels in \[0, 3\), got 3"):
        F.one_hot(jnp.array([0, 3]), 3)                          # JAX would give a zero row
    with pytest.raises(TypeError, match="integer class indices"):
        F.one_hot(jnp.array([0.0, 1.0]), 2)


def test_F_dropout_needs_a_key_in_training():
    x = jnp.ones((200,))
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False), x)
    with pytest.raises(ValueError, match="key= a jax.random key"):
        F.dropout(x, 0.5)                                       # PyTorch's default training=True
    y = F.dropout(x, 0.5, True, key=jax.random.key(1))
    assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 2.0}
    np.testing.assert_array_equal(y, F.dropout(x, 0.5, True, key=jax.random.key(1)))
    with pytest.raises(ValueError, match=r"p a probability in \[0, 1\]"):
        F.dropout(x, 1.5, key=jax.random.key(0))


LOGITS = jnp.array([[2.0, 0.5, -1.0], [0.1, 1.0, 0.3]])
LABELS = jnp.array([0, 2])


@pytest.mark.parametrize("cls, fn, args", [
    (nn.CrossEntropyLoss, losses.cross_entropy, (LOGITS, LABELS)),
    (nn.NLLLoss, losses.nll_loss, (jax.nn.log_softmax(LOGITS), LABELS)),
    (nn.MSELoss, losses.mse_loss, (LOGITS, jnp.zeros_like(LOGITS))),
    (nn.BCELoss, losses.binary_cross_entropy, (jax.nn.sigmoid(LOGITS), jnp.ones_like(LOGITS))),
    (nn.BCEWithLogitsLoss, losses.binary_cross_entropy_with_logits,
     (LOGITS, jnp.ones_like(LOGITS))),
])
def test_loss_classes_equal_the_functions_for_every_reduction(cls, fn, args):
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_array_equal(cls(reduction=reduction)(*args),
                                      fn(*args, reduction=reduction))
    # F has the same function; the class is a valid static jit argument (frozen, hashable)
    assert getattr(F, fn.__name__) is fn
    assert cls() == cls() and hash(cls()) == hash(cls())
    jitted = jax.jit(lambda a, b, loss: loss(a, b), static_argnums=2)
    np.testing.assert_allclose(jitted(*args, cls()), fn(*args), rtol=1e-6)
    with pytest.raises(ValueError, match="expected reduction in"):
        cls(reduction="avg")


def test_cross_entropy_loss_label_smoothing():
    np.testing.assert_array_equal(nn.CrossEntropyLoss(label_smoothing=0.1)(LOGITS, LABELS),
                                  losses.cross_entropy(LOGITS, LABELS, label_smoothing=0.1))


def test_tensor_dataset_is_array_dataset():
    ds = TensorDataset(X_TRAIN, Y_TRAIN)
    assert isinstance(ds, ArrayDataset) and len(ds) == 5
    np.testing.assert_array_equal(ds[3][0], X_TRAIN[3])


# model.<PyTorch method>: works (checked) or raises naming the jaxnet way.
@pytest.mark.parametrize("spelling, call, match", [
    ("model.parameters()", lambda m: m.parameters(), r"nn.split\(model\); .*optax.adam"),
    ("optim.SGD(model.parameters(), lr=0.5)", lambda m: list(m.parameters()), "nn.split"),
    ("model.named_parameters()", lambda m: m.named_parameters(), r"nn.split\(model\).params"),
    ("model.to(device)", lambda m: m.to("cuda"), "jax.device_put"),
    ("model = model.to(device)", lambda m: m.to(jax.devices()[0]), "jax.device_put"),
    ("model.cuda()", lambda m: m.cuda(), "jax.device_put"),
    ("model.cpu()", lambda m: m.cpu(), "jax.device_get"),
    ("model.zero_grad()", lambda m: m.zero_grad(), "jax.value_and_grad returns fresh"),
    ("model.fc1.requires_grad_(False)", lambda m: m.layers.layers[0].requires_grad_(False),
     "jaxnet.optim.freeze"),
    ("model.requires_grad = False", lambda m: setattr(m, "requires_grad", False),
     "jaxnet.optim.freeze"),
    ("model.load_state_dict(sd, strict=False)",
     lambda m: m.load_state_dict(m.state_dict(), strict=False), "strict=False"),
])
def test_model_methods_name_the_jaxnet_way(spelling, call, match):
    with pytest.raises(TypeError, match=match):
        call(NeuralNetwork(2, 2, rngs=nn.Rngs(0)))


def test_weight_requires_grad_is_refused_at_split():
    model = MNISTNet(rngs=nn.Rngs(0))
    model.fc1.weight.requires_grad = False      # the course's freeze, one statement
    for call in (nn.split, nn.state_dict):
        with pytest.raises(TypeError, match=r"fc1.weight.requires_grad: .*jaxnet.optim.freeze"):
            call(model)


def test_model_state_dict_and_train_eval_work():
    a, b = NeuralNetwork(2, 2, rngs=nn.Rngs(0)), NeuralNetwork(2, 2, rngs=nn.Rngs(1))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(jnp.asarray(X_TRAIN)), b(jnp.asarray(X_TRAIN)))
    # train()/eval() set the mode of a model called directly (NNX's); apply takes train=.
    drop = nn.Sequential(nn.Linear(2, 4, rngs=nn.Rngs(0)), nn.Dropout(0.5))
    drop.train()
    with pytest.raises(ValueError, match=r"apply\(..., train=True, rng=key\)"):
        drop(jnp.ones((3, 2)))
    drop.eval()
    np.testing.assert_array_equal(drop(jnp.ones((3, 2))), drop(jnp.ones((3, 2))))
    bn = nn.BatchNorm1d(2)
    bn.eval()
    np.testing.assert_allclose(bn(jnp.ones((3, 2)) * 5), jnp.ones((3, 2)) * 5, rtol=1e-4)


@pytest.mark.parametrize("torch_like", [
    lambda m: {"layers.0.weight": np.zeros((30, 2), np.float32),
               "layers.0.bias": np.zeros(30, np.float32)},
])
def test_torch_state_dict_into_load_state_dict_names_interop(torch_like):
    model = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
    for load in (lambda sd: nn.load_state_dict(model, sd), model.load_state_dict):
        with pytest.raises(TypeError, match=r"jaxnet.interop.from_torch_state_dict\(sd, model\)"):
            load(torch_like(model))


def test_torch_tensors_state_dict_names_interop():
    torch = pytest.importorskip("torch")
    tmodel = torch.nn.Linear(2, 3)
    with pytest.raises(TypeError, match="jaxnet.interop.from_torch_state_dict"):
        nn.load_state_dict(nn.Linear(2, 3, rngs=nn.Rngs(0)), tmodel.state_dict())


def test_uint8_into_linear_raises_naming_to_float():
    layer = nn.Linear(4, 2, rngs=nn.Rngs(0))
    pixels = np.full((3, 4), 255, np.uint8)
    with pytest.raises(TypeError, match=r"dtype uint8; convert pixels to float first: "
                                        r"datasets.to_float\(images\)"):
        layer(pixels)
    with pytest.raises(TypeError, match="dtype uint8"):
        jax.jit(lambda x: nn.split(layer).apply(*nn.split(layer)[1:], x)[0])(pixels)
    with pytest.raises(TypeError, match=r"dtype int32; convert it first"):
        layer(jnp.ones((3, 4), jnp.int32))
    # the check is static (dtype): the traced program is one matmul and one add, as before
    jaxpr = str(jax.make_jaxpr(lambda x: layer(x))(jnp.ones((3, 4))))
    assert jaxpr.count("dot_general") == 1 and "convert_element_type" not in jaxpr


# Spellings on objects jaxnet does not own: what happens, and the cheat sheet names the way.
def test_foreign_spellings_and_the_cheatsheet_names_them():
    from pathlib import Path

    loss = losses.cross_entropy(LOGITS, LABELS)
    with pytest.raises(AttributeError):
        loss.backward()
    with pytest.raises(AttributeError):
        optax.adam(1e-3).zero_grad()
    x = jnp.zeros((2, 28, 28))
    with pytest.raises(NotImplementedError, match="view"):
        x.view(-1, 784)                                 # jax's view is a dtype view
    assert x.reshape(-1, 784).shape == (2, 784)
    sheet = (Path(__file__).parents[1] / "docs" / "pytorch_cheatsheet.md").read_text()
    for spelling, counterpart in [("loss.backward()", "jax.grad"),
                                  ("optimizer.zero_grad()", "nothing"),
                                  ("t.view(", "x.reshape("),
                                  ("import torch.nn.functional as F",
                                   "import jaxnet.nn.functional as F"),
                                  ("model.parameters()", "nn.split"),
                                  ("requires_grad", "jaxnet.optim.freeze"),
                                  ("TensorDataset(x, y)", "TensorDataset")]:
        rows = [line for line in sheet.splitlines() if spelling in line]
        assert any(counterpart in row for row in rows), (spelling, counterpart)


def test_no_warnings_from_the_new_names():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MNISTNet(rngs=nn.Rngs(0))
        nn.split(model)
        F.relu(jnp.ones(2))


# requires_grad set where nn.split cannot see it (issue 17 item 2): a table in the style of
# tests/test_faults.py. Each row prepares the course's model, sets requires_grad the way a
# learner would (after nn.split, on the kernel Param, through Flax's set_metadata), then
# trains; the row passes when the first jaxnet call after the setting raises naming
# jaxnet.optim.freeze. Before: fit trained every layer (silent), or Flax's AttributeError
# advised variable.set_metadata(requires_grad=...), which froze nothing.
@dataclasses.dataclass
class Case:
    id: str
    call: Callable[[dict], Any]
    error: type[BaseException] | None = TypeError
    match: str = "jaxnet.optim.freeze"
    check: Callable[[dict, Any], None] | None = None
    setup: Callable[[dict], None] | None = None


def _split_first(w):
    w["model"] = MNISTNet(rngs=nn.Rngs(0))
    w["apply"], w["params"], w["model_state"] = nn.split(w["model"])


class BNNet(nn.Module):
    def __init__(self, *, rngs):
        self.layers = nn.Sequential(nn.Linear(784, 16, rngs=rngs), nn.BatchNorm1d(16),
                                    nn.ReLU(), nn.Linear(16, 10, rngs=rngs),
                                    nn.LogSoftmax(dim=1))

    def forward(self, x):
        return self.layers(x)


def _split_bn(w):
    w["model"] = BNNet(rngs=nn.Rngs(0))
    w["apply"], w["params"], w["model_state"] = nn.split(w["model"])


def _fit(w):
    state = TrainState.create(w["params"], optax.sgd(0.1), model_state=w["model_state"])
    x = np.random.default_rng(0).normal(size=(8, 784)).astype(np.float32)
    return fit(state, w["apply"], F.nll_loss, optax.sgd(0.1), (x, np.arange(8) % 10),
               epochs=1, batch_size=4, progress=False, log=None)


def _freeze_then(how, then):
    def call(w):
        how(w["model"])
        return then(w)
    return call


def _set_metadata(m):
    m.fc1.kernel.set_metadata(requires_grad=False)  # what Flax's own message advises


REQUIRES_GRAD = [
    Case("weight.requires_grad after split, then fit",
         _freeze_then(lambda m: setattr(m.fc1.weight, "requires_grad", False), _fit),
         match=r"^fc1\.weight\.requires_grad: .*jaxnet\.optim\.freeze", setup=_split_first),
    Case("weight.requires_grad after split, then make_train_step",
         _freeze_then(lambda m: setattr(m.fc1.weight, "requires_grad", False),
                      lambda w: make_train_step(w["apply"], F.nll_loss, optax.sgd(0.1))),
         match=r"^fc1\.weight\.requires_grad: ", setup=_split_first),
    Case("layer.kernel.requires_grad = False",
         lambda w: setattr(w["model"].fc1.kernel, "requires_grad", False),
         match=r"^kernel\.requires_grad: .*jaxnet\.optim\.freeze\(optax", setup=_split_first),
    Case("layer.bias.requires_grad = False",
         lambda w: setattr(w["model"].fc2.bias, "requires_grad", False),
         match=r"^bias\.requires_grad: .*jaxnet\.optim\.freeze", setup=_split_first),
    Case("layer.kernel.requires_grad_(False)",
         lambda w: w["model"].fc1.kernel.requires_grad_(False),
         match=r"^kernel\.requires_grad_\(\): .*jaxnet\.optim\.freeze", setup=_split_first),
    Case("kernel.set_metadata(requires_grad=False), Flax's advice",
         lambda w: _set_metadata(w["model"]),
         match=r"^kernel\.requires_grad: .*jaxnet\.optim\.freeze", setup=_split_first),
    Case("kernel.set_metadata({'requires_grad': False})",
         lambda w: w["model"].fc1.kernel.set_metadata({"requires_grad": False}),
         match=r"^kernel\.requires_grad: ", setup=_split_first),
    # BatchNorm1d's weight is a jaxnet Param too: refused at once, before fit
    Case("BatchNorm1d weight.set_metadata(requires_grad=False), then fit",
         _freeze_then(lambda m: m.layers.layers[1].weight.set_metadata(requires_grad=False),
                      _fit),
         match=r"^weight\.requires_grad: .*jaxnet\.optim\.freeze",
         setup=_split_bn),
    Case("BatchNorm1d weight.set_metadata(requires_grad=False), then make_train_step",
         _freeze_then(lambda m: m.layers.layers[1].weight.set_metadata(requires_grad=False),
                      lambda w: make_train_step(w["apply"], F.nll_loss, optax.sgd(0.1))),
         match=r"^weight\.requires_grad: ", setup=_split_bn),
    Case("reading kernel.requires_grad (hasattr stays False)",
         lambda w: w["model"].fc1.kernel.requires_grad, error=AttributeError,
         match=r"^kernel\.requires_grad: .*jaxnet\.optim\.freeze", setup=_split_first),
    Case("hasattr(kernel, 'requires_grad')",
         lambda w: hasattr(w["model"].fc1.kernel, "requires_grad"), error=None,
         setup=_split_first, check=lambda w, out: out is False),
    # The rows that must keep working: no requires_grad anywhere, fit trains as before; the
    # kernel's value and metadata are still Flax's.
    Case("no requires_grad: fit trains", _fit, error=None, setup=_split_first,
         check=lambda w, out: int(out[0].step) == 2),
    Case("kernel[...] and set_metadata of another key still work",
         lambda w: (w["model"].fc1.kernel.set_metadata(note="mine"),
                    w["model"].fc1.kernel.get_metadata()["note"], w["model"].fc1.kernel[...])[1:],
         error=None, setup=_split_first,
         check=lambda w, out: out[0] == "mine" and out[1].shape == (784, 64)),
]


@pytest.mark.parametrize("case", REQUIRES_GRAD, ids=[c.id for c in REQUIRES_GRAD])
def test_requires_grad_anywhere_names_freeze(case):
    w: dict = {}
    if case.setup:
        case.setup(w)
    if case.error is None:
        out = case.call(w)
        assert case.check is None or case.check(w, out)
        return
    with pytest.raises(case.error, match=case.match) as e:
        case.call(w)
    assert "\n" not in str(e.value)
