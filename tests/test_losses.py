import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnet import losses

Z = jnp.array([[-0.3, -0.5, -0.5], [-0.4, -0.1, -0.5], [-0.3, -0.94, -0.5],
               [-0.99, -0.88, -0.5]])
Y = jnp.array([0, 1, 2, 2])


def test_cross_entropy_course_numbers():
    np.testing.assert_allclose(losses.cross_entropy(Z, Y, reduction="none"),
                               [0.9698, 0.8801, 1.0527, 0.8314], atol=1e-4)
    np.testing.assert_allclose(losses.cross_entropy(Z, Y), 0.9335, atol=1e-4)
    np.testing.assert_allclose(losses.cross_entropy(Z, Y, reduction="sum"), 4 * 0.93350, atol=4e-4)


def test_nll_of_log_softmax_equals_cross_entropy():
    np.testing.assert_allclose(losses.nll_loss(jax.nn.log_softmax(Z), Y), 0.9335, atol=1e-4)
    np.testing.assert_allclose(losses.nll_loss(jax.nn.log_softmax(Z), Y, reduction="none"),
                               losses.cross_entropy(Z, Y, reduction="none"), rtol=1e-6)


def _logistic_loss(w1, b):
    return losses.binary_cross_entropy(jax.nn.sigmoid(1.1 * w1 + b), jnp.float32(1.0))


def test_logistic_regression_scene_loss_and_gradients():
    np.testing.assert_allclose(_logistic_loss(2.2, 0.0), 0.0852, atol=1e-4)
    dw1, db = jax.grad(_logistic_loss, argnums=(0, 1))(2.2, 0.0)
    np.testing.assert_allclose(dw1, -0.0898, atol=1e-4)
    np.testing.assert_allclose(db, -0.0817, atol=1e-4)


def test_binary_cross_entropy_clamps_log_at_minus_100_like_pytorch():
    out = losses.binary_cross_entropy(jnp.array([0.0, 1.0, 0.0, 1.0]),
                                      jnp.array([1.0, 0.0, 0.0, 1.0]), reduction="none")
    np.testing.assert_allclose(out, [100.0, 100.0, 0.0, 0.0])
    assert jnp.isfinite(losses.binary_cross_entropy(jnp.array([0.0]), jnp.array([1.0])))


def test_with_logits_matches_sigmoid_then_bce(key):
    logits = jax.random.normal(key, (16,)) * 3
    targets = (jax.random.uniform(jax.random.fold_in(key, 1), (16,)) > 0.5).astype(jnp.float32)
    np.testing.assert_allclose(
        losses.binary_cross_entropy_with_logits(logits, targets),
        losses.binary_cross_entropy(jax.nn.sigmoid(logits), targets), rtol=1e-5)
    # stable where sigmoid saturates
    assert jnp.isfinite(losses.binary_cross_entropy_with_logits(jnp.array([200.0]),
                                                                 jnp.array([0.0])))


def test_mse_reductions():
    x, t = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[1.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(losses.mse_loss(x, t, reduction="none"), [[0, 4], [9, 0]])
    np.testing.assert_allclose(losses.mse_loss(x, t), 13 / 4)
    np.testing.assert_allclose(losses.mse_loss(x, t, reduction="sum"), 13)


def test_masked_mean_divides_by_mask_sum():
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    per = losses.cross_entropy(Z, Y, reduction="none")
    np.testing.assert_allclose(losses.cross_entropy(Z, Y, mask=mask), per[:2].mean(), rtol=1e-6)
    np.testing.assert_allclose(losses.cross_entropy(Z, Y, mask=mask, reduction="sum"),
                               per[:2].sum(), rtol=1e-6)
    # mse: per-example mask broadcast over features, mean over the counted elements
    x, t = jnp.ones((3, 2)), jnp.zeros((3, 2))
    np.testing.assert_allclose(losses.mse_loss(x * jnp.array([[1.], [2.], [9.]]), t,
                                               mask=jnp.array([1, 1, 0])), (1 + 4) / 2)


def test_matches_pytorch_formulas_in_numpy(key):
    logits = np.asarray(jax.random.normal(key, (8, 5)), np.float64)
    labels = np.arange(8) % 5
    lse = np.log(np.exp(logits).sum(-1))
    expected = (lse - logits[np.arange(8), labels]).mean()
    np.testing.assert_allclose(losses.cross_entropy(jnp.asarray(logits, jnp.float32),
                                                    jnp.asarray(labels)), expected, rtol=1e-5)


def test_gradients_check_grads(key):
    labels = jnp.array([0, 2, 1, 1])
    logits = jax.random.normal(key, (4, 3))
    check_grads(lambda z: losses.cross_entropy(z, labels), (logits,), order=2,
                modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)
    check_grads(lambda z: losses.nll_loss(jax.nn.log_softmax(z), labels), (logits,), order=1,
                modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)
    probs = jnp.array([0.2, 0.7, 0.9])
    check_grads(lambda p: losses.binary_cross_entropy(p, jnp.array([0.0, 1.0, 1.0])), (probs,),
                order=1, modes=["rev"], eps=1e-3, atol=2e-2, rtol=2e-2)
    check_grads(lambda z: losses.binary_cross_entropy_with_logits(z, jnp.array([0.0, 1.0, 1.0])),
                (jnp.array([-1.0, 0.5, 2.0]),), order=2, modes=["rev"], eps=1e-2, atol=2e-2,
                rtol=2e-2)
    check_grads(lambda x: losses.mse_loss(x, jnp.zeros(3)), (jnp.array([1.0, -2.0, 0.5]),),
                order=2, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


def test_out_of_range_label_is_nan_under_jit_and_an_error_eagerly():
    f = jax.jit(lambda z, y: losses.cross_entropy(z, y))
    assert jnp.isnan(f(Z, jnp.array([0, 1, 2, 3])))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\] \(3 classes\), got 3"):
        losses.cross_entropy(Z, jnp.array([0, 1, 2, 3]))


@pytest.mark.parametrize("call,match", [
    (lambda: losses.cross_entropy(Z, Y, reduction="avg"), "reduction: expected one of"),
    (lambda: losses.cross_entropy(Z, Y[:3]), r"labels must have shape \(4,\).*got \(3,\)"),
    (lambda: losses.cross_entropy(Z, Y.astype(jnp.float32)), "integer class indices.*float32"),
    (lambda: losses.mse_loss(jnp.ones(3), jnp.ones((3, 1))), r"target must have the shape"),
    (lambda: losses.cross_entropy(Z, Y, mask=jnp.ones(3)), r"mask: expected shape \(4,\)"),
])
def test_bad_inputs_raise_named_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
