"""Models written the way the course writes them: layer objects, user subclasses, modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnet import nn


class NeuralNetwork(nn.Module):
    """The course's model, pasted in (plus ``rngs``: JAX has no global seed)."""

    def __init__(self, num_inputs, num_outputs, *, rngs):
        self.layers = nn.Sequential(
            # 1st hidden layer
            nn.Linear(num_inputs, 30, rngs=rngs),
            nn.ReLU(),
            # 2nd hidden layer
            nn.Linear(30, 20, rngs=rngs),
            nn.ReLU(),
            # output layer
            nn.Linear(20, num_outputs, rngs=rngs),
        )

    def __call__(self, x):
        logits = self.layers(x)
        return logits


class WithDropoutAndBatchNorm(nn.Module):
    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(4, 8, rngs=rngs)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


def tree_equal(a, b) -> bool:
    return jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))


# ---------------------------------------------------------------- the course's model

def test_course_network_as_a_user_subclass():
    model = NeuralNetwork(50, 3, rngs=nn.Rngs(123))
    assert nn.count_params(model) == 2213
    assert isinstance(model.layers[0], nn.Linear) and isinstance(model.layers[1], nn.ReLU)
    assert model.layers[0].weight.shape == (30, 50)  # PyTorch's (out, in)
    np.testing.assert_array_equal(model.layers[0].weight, model.layers[0].kernel[...].T)
    assert model.layers[0].bias.shape == (30,)
    assert len(model.layers) == 5 and [type(m).__name__ for m in model.layers] == \
        ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    x = jax.random.normal(jax.random.key(0), (4, 50))
    assert model(x).shape == (4, 3)


def test_weight_is_a_read_only_view():
    layer = nn.Linear(3, 2, rngs=nn.Rngs(0))
    with pytest.raises(AttributeError):
        layer.weight = jnp.zeros((2, 3))


def test_summary_of_a_user_module_is_nested_with_shapes_and_counts():
    text = nn.summary(NeuralNetwork(50, 3, rngs=nn.Rngs(0)), (8, 50), print_fn=None)
    lines = text.splitlines()
    assert lines[0] == "NeuralNetwork (input (8, 50))"
    rows = [line.split() for line in lines[4:-3]]
    assert [r[0] for r in rows] == ["NeuralNetwork", "layers", "layers.0", "layers.1",
                                    "layers.2", "layers.3", "layers.4"]
    assert rows[2][1:] == ["Linear(50,", "30)", "(8,", "30)", "1,530"]
    assert rows[3][-1] == "--"  # ReLU has no parameters
    assert lines[-2:] == ["Total params: 2,213", "Non-trainable state: 0"]


def test_summary_orders_layers_by_call_and_counts_state_without_changing_it():
    model = WithDropoutAndBatchNorm(rngs=nn.Rngs(0))
    before = nn.state_dict(model)
    linear_call, nnx_call = nn.Linear.__call__, nnx.Linear.__call__
    text = nn.summary(model, (5, 4), print_fn=None)
    names = [line.split()[0] for line in text.splitlines()[4:-3]]
    assert names == ["WithDropoutAndBatchNorm", "fc1", "bn", "drop", "fc2"]
    assert "Non-trainable state: 16" in text
    assert tree_equal(before, nn.state_dict(model))
    # the recording wrappers are gone
    assert nn.Linear.__call__ is linear_call and nnx.Linear.__call__ is nnx_call


def test_summary_lists_plain_functions_in_a_sequential_and_leaves_them_in_place():
    # JAX users put functions such as jax.nn.relu in a Sequential; print(model)
    # shows them, so the summary must too (it used to skip them silently)
    model = nn.Sequential(nn.Linear(4, 8, rngs=nn.Rngs(0)), jax.nn.relu,
                          nn.Linear(8, 2, rngs=nn.Rngs(1)), lambda x: x * 2)
    text = nn.summary(model, (3, 4), print_fn=None)
    rows = [line.split() for line in text.splitlines()[4:-3]]
    assert [r[:2] for r in rows] == [["Sequential", "Sequential"], ["0", "Linear(4,"],
                                     ["1", "relu"], ["2", "Linear(8,"], ["3", "<lambda>"]]
    assert rows[2][2:] == ["(3,", "8)", "--"] and rows[4][2:] == ["(3,", "2)", "--"]
    assert model.layers[1] is jax.nn.relu  # the recording wrapper was on a copy
    assert model(jnp.ones((3, 4))).shape == (3, 2)

def test_summary_of_mlp():
    text = nn.summary(nn.MLP(784, [512, 256], 10, rngs=0), (64, 784), print_fn=None)
    assert any(line.split()[:5] == ["0", "Linear(784,", "512)", "(64,", "512)"]
               and line.endswith("401,920") for line in text.splitlines())
    assert "Total params: 535,818" in text


@pytest.mark.parametrize("args,expected", [
    ((50, [30, 20], 3), 2213),
    ((2, [30, 20], 2), 752),
    ((784, [512, 256], 10), 535818),
    ((4, [], 3), 15),
])
def test_count_params_matches_course(args, expected):
    model = nn.MLP(*args, rngs=123)
    assert nn.count_params(model) == expected
    assert nn.count_params(nn.split(model).params) == expected


# ---------------------------------------------------------------- seeds

def test_same_seed_same_parameters_and_different_seed_differs():
    a = nn.split(nn.MLP(10, [8], 2, rngs=7)).params
    b = nn.split(nn.MLP(10, [8], 2, rngs=nn.Rngs(7))).params
    c = nn.split(nn.MLP(10, [8], 2, rngs=8)).params
    assert tree_equal(a, b)
    assert not jnp.array_equal(a["layers"][0]["kernel"], c["layers"][0]["kernel"])


def test_no_two_layers_share_a_key():
    rngs = nn.Rngs(0)
    a, b = nn.Linear(16, 16, rngs=rngs), nn.Linear(16, 16, rngs=rngs)
    c = nn.Linear(16, 32, rngs=rngs)
    assert not np.array_equal(a.kernel[...], b.kernel[...])
    # not a rescaled copy of the same draws either
    for other in (b.kernel[...], c.kernel[...][:, :16]):
        corr = np.corrcoef(np.ravel(a.kernel[...]), np.ravel(other))[0, 1]
        assert abs(corr) < 0.2
    model = NeuralNetwork(16, 16, rngs=nn.Rngs(0))
    assert not np.array_equal(model.layers[0].bias[...], model.layers[2].bias[...][:16])


def test_linear_uses_pytorch_default_init_bounds():
    layer = nn.Linear(400, 300, rngs=nn.Rngs(0))
    bound = 1 / np.sqrt(400)
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    assert w.shape == (400, 300) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound and np.abs(b).std() > 0


# ---------------------------------------------------------------- layers

@pytest.mark.parametrize("layer,reference", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.Identity(), lambda x: x),
    (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.Softmax(dim=0), lambda x: np.exp(x) / np.exp(x).sum(0, keepdims=True)),
    (nn.LogSoftmax(dim=1), lambda x: x - np.log(np.exp(x).sum(1, keepdims=True))),
    (nn.GELU(), lambda x: x * 0.5 * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_stateless_layers_match_their_formula(layer, reference):
    x = np.array([[-2.0, -0.5, 0.0, 1.5], [3.0, 0.25, -1.0, 2.0]], np.float32)
    np.testing.assert_allclose(layer(jnp.asarray(x)), reference(x), rtol=1e-5, atol=1e-6)
    assert nn.count_params(layer) == 0


def test_flatten_like_pytorch():
    x = jnp.zeros((2, 3, 4, 5))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(start_dim=0)(x).shape == (120,)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)


def test_sequential_indexing_and_mixed_layers():
    model = nn.Sequential(nn.Linear(10, 32, rngs=nn.Rngs(0)), nn.Sigmoid(),
                          nn.Linear(32, 1, rngs=nn.Rngs(1)))
    assert nn.count_params(model) == 10 * 32 + 32 + 32 + 1
    assert model(jnp.ones((3, 10))).shape == (3, 1)
    assert len(model) == 3 and isinstance(list(model)[1], nn.Sigmoid)


def test_output_activation_log_softmax_gives_log_probabilities():
    model = nn.MLP(3, [4], 5, output_activation="log_softmax", rngs=0)
    out = model(jnp.ones((2, 3)))
    np.testing.assert_allclose(jnp.exp(out).sum(-1), [1.0, 1.0], rtol=1e-5)


# ---------------------------------------------------------------- the pure view and modes

def test_functional_apply_equals_module_call_and_is_jittable(key):
    model = nn.MLP(5, [7, 6], 3, activation="tanh", rngs=1)
    apply, params, state = nn.split(model)
    x = jax.random.normal(key, (4, 5))
    out, new_state = jax.jit(apply)(params, state, x)
    np.testing.assert_allclose(out, model(x), rtol=1e-6)
    assert state == {} and new_state == {}
    grads = jax.grad(lambda p: apply(p, state, x)[0].sum())(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)


def test_dropout_is_random_in_training_keyed_and_identity_in_eval():
    apply, params, state = nn.split(nn.Dropout(0.5))
    x = jnp.ones((4, 1000))
    assert jnp.array_equal(apply(params, state, x)[0], x)  # eval: identity
    k1, k2 = jax.random.key(1), jax.random.key(2)
    y1, _ = apply(params, state, x, train=True, rng=k1)
    y1b, _ = apply(params, state, x, train=True, rng=k1)
    y2, _ = apply(params, state, x, train=True, rng=k2)
    assert jnp.array_equal(y1, y1b) and not jnp.array_equal(y1, y2)
    assert set(np.unique(y1).tolist()) == {0.0, 2.0}  # dropped, or scaled by 1/(1-p)
    assert 0.45 < float(jnp.mean(y1 == 0)) < 0.55


def test_two_dropout_layers_draw_different_masks():
    model = nn.Sequential(nn.Dropout(0.5), nn.Identity(), nn.Dropout(0.5))
    apply, params, state = nn.split(nn.Sequential(nn.Dropout(0.5)))
    one, _ = apply(params, state, jnp.ones((1, 400)), train=True, rng=jax.random.key(0))
    apply2, params2, state2 = nn.split(model)
    two, _ = apply2(params2, state2, jnp.ones((1, 400)), train=True, rng=jax.random.key(0))
    # a second independent mask: values 0 or 4, with ~1/4 kept, not the first mask again
    assert set(np.unique(two).tolist()) <= {0.0, 4.0}
    assert not jnp.array_equal(two > 0, one > 0)


def test_model_train_and_eval_work_eagerly_too():
    model = WithDropoutAndBatchNorm(rngs=nn.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (6, 4))
    with pytest.raises(ValueError, match="Dropout: training mode needs a key"):
        model(x)  # training mode by default, like PyTorch, and no key
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))


def test_batchnorm_updates_running_statistics_in_training_only():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(16, 4)).astype(np.float32)
    bn = nn.BatchNorm1d(4, momentum=0.1)
    apply, params, state = nn.split(bn)
    y, new = apply(params, state, jnp.asarray(x), train=True)
    mean, var = x.mean(0), x.var(0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new["running_mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(new["running_var"], 0.9 + 0.1 * x.var(0, ddof=1), rtol=1e-5)
    # eval: the running statistics normalise and nothing changes
    y_eval, same = apply(params, new, jnp.asarray(x))
    assert same is new
    np.testing.assert_allclose(
        y_eval, (x - new["running_mean"]) / np.sqrt(new["running_var"] + 1e-5), rtol=1e-4)
    np.testing.assert_array_equal(state["running_mean"], np.zeros(4))  # inputs not mutated


def test_batchnorm_three_dimensional_input_normalises_per_channel():
    x = np.random.default_rng(1).normal(size=(4, 3, 5)).astype(np.float32)
    apply, params, state = nn.split(nn.BatchNorm1d(3))
    y, _ = apply(params, state, jnp.asarray(x), train=True)
    np.testing.assert_allclose(np.asarray(y).mean(axis=(0, 2)), 0, atol=1e-5)


def test_functional_with_batchnorm_and_dropout_under_jit_and_grad():
    model = WithDropoutAndBatchNorm(rngs=nn.Rngs(0))
    apply, params, state = nn.split(model)
    x = jax.random.normal(jax.random.key(3), (6, 4))

    def loss(p):
        out, new = apply(p, state, x, train=True, rng=jax.random.key(0))
        return jnp.mean(out ** 2), new

    (value, new_state), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert jnp.isfinite(value)
    assert sorted(new_state["bn"]) == ["running_mean", "running_var"]
    assert not jnp.array_equal(new_state["bn"]["running_mean"], state["bn"]["running_mean"])
    assert jax.tree.structure(grads) == jax.tree.structure(params)


# ---------------------------------------------------------------- state_dict

def test_state_dict_round_trip_into_fresh_model_includes_buffers():
    a, b = WithDropoutAndBatchNorm(rngs=nn.Rngs(0)), WithDropoutAndBatchNorm(rngs=nn.Rngs(1))
    a.bn.running_mean[...] = jnp.arange(8.0)
    a.eval()
    b.eval()
    x = jnp.ones((2, 4))
    assert not jnp.allclose(a(x), b(x))
    sd = nn.state_dict(a)
    assert sorted(sd["bn"]) == ["bias", "running_mean", "running_var", "weight"]
    nn.load_state_dict(b, sd)
    np.testing.assert_array_equal(a(x), b(x))


def test_load_state_dict_names_the_mismatching_path():
    sd = nn.state_dict(nn.MLP(3, [5], 2, rngs=0))
    with pytest.raises(ValueError, match=r"\['layers'\]\[0\]\['bias'\].*\(4,\).*\(5,\)"):
        nn.load_state_dict(nn.MLP(3, [4], 2, rngs=0), sd)


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_features=0, hidden=[3], out_features=2), "in_features: .* positive int, got 0"),
    (dict(in_features=3, hidden=[3, -1], out_features=2), r"hidden\[1\]: .* got -1"),
    (dict(in_features=3, hidden=5, out_features=2), "hidden: expected a sequence"),
    (dict(in_features=3, hidden=[3], out_features=2, activation="relu6"), "activation: expected"),
    (dict(in_features=3, hidden=[3], out_features=2, rngs="zero"), "rngs: expected"),
    (dict(in_features=3, hidden=[3], out_features=2, rngs=None), "rngs is required"),
])
def test_mlp_bad_arguments(kwargs, match):
    kwargs.setdefault("rngs", 0)
    with pytest.raises((ValueError, TypeError), match=match):
        nn.MLP(**kwargs)


def test_models_can_be_built_abstractly_and_under_jit():
    abstract = nnx.eval_shape(lambda: nn.MLP(784, [512], 10, rngs=0))
    assert nn.count_params(abstract) == 784 * 512 + 512 + 5130
    built = jax.jit(lambda: nn.split(nn.MLP(3, [4], 2, rngs=0)).params)()
    eager = nn.split(nn.MLP(3, [4], 2, rngs=0)).params
    for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_print_model_shows_nested_layers_like_pytorch():
    text = str(NeuralNetwork(50, 3, rngs=nn.Rngs(0)))
    assert text == "\n".join([
        "NeuralNetwork(",
        "  (layers): Sequential(",
        "    (0): Linear(in_features=50, out_features=30, bias=True)",
        "    (1): ReLU()",
        "    (2): Linear(in_features=30, out_features=20, bias=True)",
        "    (3): ReLU()",
        "    (4): Linear(in_features=20, out_features=3, bias=True)",
        "  )",
        ")"])
    assert repr(WithDropoutAndBatchNorm(rngs=nn.Rngs(0))).splitlines()[1:3] == [
        "  (fc1): Linear(in_features=4, out_features=8, bias=True)",
        "  (bn): BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True)"]
    assert isinstance(nn.Linear(2, 2, rngs=nn.Rngs(0)), nn.Module)


def test_a_model_written_with_forward_works_and_a_bare_nnx_one_gets_a_clear_error():
    class CourseStyle(nn.Module):
        def __init__(self, *, rngs):
            self.fc = nn.Linear(2, 2, rngs=rngs)

        def forward(self, x):
            return self.fc(x)

    model = CourseStyle(rngs=nn.Rngs(0))
    assert "fc" in nn.summary(model, (1, 2), print_fn=None)
    apply, params, state = nn.split(model)
    assert tree_equal(apply(params, state, jnp.ones((1, 2)))[0], model(jnp.ones((1, 2))))

    class BareNnx(nnx.Module):  # only jaxnet's Module gives PyTorch's model(x) -> forward
        def __init__(self, *, rngs):
            self.fc = nn.Linear(2, 2, rngs=rngs)

        def forward(self, x):
            return self.fc(x)

    for call in (lambda m: nn.summary(m, (1, 2)), nn.split):
        with pytest.raises(TypeError, match=r"BareNnx defines no __call__\(self, x\).*"
                                            r"rename forward to __call__"):
            call(BareNnx(rngs=nn.Rngs(0)))
