import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnet import nn


@pytest.mark.parametrize("args,expected", [
    ((50, [30, 20], 3), 2213),
    ((2, [30, 20], 2), 752),
    ((784, [512, 256], 10), 535818),
    ((4, [], 3), 15),
])
def test_count_params_matches_course(args, expected):
    model = nn.MLP(*args, rngs=123)
    assert nn.count_params(model) == expected
    assert nn.count_params(nn.functional(model)[1]) == expected


def test_same_seed_same_parameters_and_different_seed_differs():
    a = nn.functional(nn.MLP(10, [8], 2, rngs=7))[1]
    b = nn.functional(nn.MLP(10, [8], 2, rngs=nnx.Rngs(7)))[1]
    c = nn.functional(nn.MLP(10, [8], 2, rngs=8))[1]
    assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    assert not jnp.array_equal(a["layers"][0]["kernel"], c["layers"][0]["kernel"])


def test_linear_uses_pytorch_default_init_bounds():
    layer = nn.Linear(400, 300, rngs=0)
    bound = 1 / np.sqrt(400)
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    assert w.shape == (400, 300) and b.shape == (300,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound and np.abs(b).std() > 0


def test_functional_apply_equals_module_call_and_is_jittable(key):
    model = nn.MLP(5, [7, 6], 3, activation="tanh", rngs=1)
    apply, params = nn.functional(model)
    x = jax.random.normal(key, (4, 5))
    np.testing.assert_allclose(jax.jit(apply)(params, x), model(x), rtol=1e-6)
    grads = jax.grad(lambda p: apply(p, x).sum())(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)


@pytest.mark.parametrize("name", sorted(nn.ACTIVATIONS))
def test_activations_by_name(name):
    x = jnp.array([[-1.0, 0.0, 2.0]])
    expected = {"relu": [0, 0, 2], "identity": [-1, 0, 2]}
    out = nn.activation(name)(x)
    assert out.shape == x.shape
    if name in expected:
        np.testing.assert_allclose(out[0], expected[name])
    if name == "log_softmax":
        np.testing.assert_allclose(jnp.exp(out).sum(), 1.0, rtol=1e-6)


def test_output_activation_log_softmax_gives_log_probabilities():
    model = nn.MLP(3, [4], 5, output_activation="log_softmax", rngs=0)
    out = model(jnp.ones((2, 3)))
    np.testing.assert_allclose(jnp.exp(out).sum(-1), [1.0, 1.0], rtol=1e-5)


def test_sequential_of_linear_and_functions():
    model = nn.Sequential(nn.Linear(10, 32, rngs=0), jax.nn.sigmoid, nn.Linear(32, 1, rngs=1))
    assert nn.count_params(model) == 10 * 32 + 32 + 32 + 1
    assert model(jnp.ones((3, 10))).shape == (3, 1)


def test_summary_table_rows_and_total():
    text = nn.summary(nn.MLP(784, [512, 256], 10), (64, 784), print_fn=None)
    lines = text.splitlines()
    assert any("Linear(784, 512)" in line and "(64, 512)" in line and "401,920" in line
               for line in lines)
    assert any("relu" in line for line in lines)
    assert lines[-1] == "Total params: 535,818"


def test_state_dict_round_trip_into_fresh_model():
    a, b = nn.MLP(3, [4], 2, rngs=0), nn.MLP(3, [4], 2, rngs=1)
    x = jnp.ones((2, 3))
    assert not jnp.allclose(a(x), b(x))
    nn.load_state_dict(b, nn.state_dict(a))
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
])
def test_mlp_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nn.MLP(**kwargs)


def test_models_can_be_built_abstractly_and_under_jit():
    abstract = nnx.eval_shape(lambda: nn.MLP(784, [512], 10, rngs=0))
    assert nn.count_params(abstract) == 784 * 512 + 512 + 5130
    built = jax.jit(lambda: nn.functional(nn.MLP(3, [4], 2, rngs=0))[1])()
    eager = nn.functional(nn.MLP(3, [4], 2, rngs=0))[1]
    for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
