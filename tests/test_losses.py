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


CLASS_LOSSES = {
    "cross_entropy": losses.cross_entropy,
    "cross_entropy_smoothed": lambda z, y, **k: losses.cross_entropy(z, y, label_smoothing=0.1,
                                                                     **k),
    "nll_loss": lambda z, y, **k: losses.nll_loss(jax.nn.log_softmax(z), y, **k),
}


@pytest.mark.parametrize("name", CLASS_LOSSES)
@pytest.mark.parametrize("bad", [-1, -3, 3, 7])
def test_out_of_range_label_is_nan_under_jit_for_that_example_only(name, bad):
    # PyTorch raises "Target -1 is out of bounds"; under jit a raise is impossible, so the
    # example's loss is NaN (the NaN guard stops training) instead of class C-1 for -1.
    loss = CLASS_LOSSES[name]
    labels = jnp.array([0, bad, 2, 2])
    per = jax.jit(lambda z, y: loss(z, y, reduction="none"))(Z, labels)
    assert jnp.isnan(per[1]) and jnp.isfinite(per[jnp.array([0, 2, 3])]).all()
    assert jnp.isnan(jax.jit(loss)(Z, labels))
    assert jnp.isnan(jax.jit(lambda z, y: loss(z, y, reduction="sum"))(Z, labels))


@pytest.mark.parametrize("name", CLASS_LOSSES)
@pytest.mark.parametrize("labels,bad,index", [
    ([0, 1, 2, 3], 3, 3), ([0, -1, 2, 5], -1, 1), ([2, 0, 9, -4], 9, 2)])
def test_out_of_range_label_eagerly_names_labels_first_bad_value_index_and_range(
        name, labels, bad, index):
    with pytest.raises(ValueError, match=rf"labels: expected class indices in \[0, 2\] "
                                         rf"\(3 classes\), got {bad} at index {index}"):
        CLASS_LOSSES[name](Z, jnp.array(labels))


@pytest.mark.parametrize("name", CLASS_LOSSES)
@pytest.mark.parametrize("big", [2**32, 2**32 + 1, 2**40, -(2**32)])
def test_int64_labels_are_range_checked_before_any_cast_to_int32(name, big):
    # 2**32 used to wrap to class 0 in the cast to JAX's int32 and pass the range check
    labels = np.array([0, 1, big, 2], np.int64)
    with pytest.raises(ValueError, match=rf"got {big} at index 2"):
        CLASS_LOSSES[name](Z, labels)
    with pytest.raises(ValueError, match=rf"got {big} at index 2"):
        CLASS_LOSSES[name](Z, [0, 1, big, 2])


@pytest.mark.parametrize("name", CLASS_LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.uint32, bool])
def test_non_signed_integer_labels_are_refused_eagerly_and_under_jit(name, dtype):
    labels = np.array([0, 1, 1, 0]).astype(dtype)
    match = "labels: expected a signed integer class index array, got "
    with pytest.raises(TypeError, match=match + str(np.dtype(dtype))):
        CLASS_LOSSES[name](Z, labels)
    with pytest.raises(TypeError, match=match):  # the dtype is static under jit
        jax.jit(CLASS_LOSSES[name])(Z, labels)


def test_float_labels_message_names_the_fixes():
    with pytest.raises(TypeError, match=r"labels.argmax\(-1\).*labels.astype\(jnp.int32\)"):
        losses.cross_entropy(Z, jax.nn.one_hot(Y, 3))
    with pytest.raises(TypeError, match=r"labels.astype\(jnp.int32\)"):
        losses.cross_entropy(Z, np.array([0, 1, 2, 2], np.uint8))


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_valid_labels_give_bit_identical_losses_and_gradients_eager_and_jit(name):
    loss = CLASS_LOSSES[name]
    for labels in (Y, np.asarray(Y, np.int64), np.asarray(Y, np.int8), [0, 1, 2, 2]):
        assert loss(Z, labels) == loss(Z, Y)
    v, g = jax.jit(jax.value_and_grad(loss))(Z, Y)
    v2, g2 = jax.value_and_grad(loss)(Z, Y)
    np.testing.assert_allclose(v, v2, rtol=1e-6)
    np.testing.assert_allclose(g, g2, rtol=1e-6, atol=1e-7)
    assert jnp.isfinite(g).all()


def test_mse_loss_refuses_integer_input_like_pytorch_instead_of_overflowing():
    big = np.array([100_000, 0], np.int32)  # 100000**2 overflowed int32
    with pytest.raises(TypeError, match=r"mse_loss: input: expected a floating-point array, "
                                        r"got int32; cast with input.astype\(jnp.float32\)"):
        losses.mse_loss(big, np.zeros(2, np.int32))
    with pytest.raises(TypeError, match="got bool"):
        losses.mse_loss(np.array([True]), np.array([1.0]))
    # integer targets are fine: cast to the float input's dtype
    np.testing.assert_allclose(losses.mse_loss(big.astype(np.float32), np.zeros(2, np.int32)),
                               5e9, rtol=1e-6)


@pytest.mark.parametrize("probs,bad,index", [([0.5, 1.5], 1.5, 1), ([-0.1, 0.5], -0.1, 0),
                                             ([0.2, float("nan")], "nan", 1)])
def test_binary_cross_entropy_refuses_probabilities_outside_0_1_eagerly(probs, bad, index):
    with pytest.raises(ValueError, match=rf"binary_cross_entropy: probs: expected probabilities "
                                         rf"in \[0, 1\], got {bad} at index {index}"):
        losses.binary_cross_entropy(jnp.array(probs), jnp.array([1.0, 0.0]))


def test_binary_cross_entropy_out_of_range_is_nan_under_jit():
    out = jax.jit(lambda p, t: losses.binary_cross_entropy(p, t, reduction="none"))(
        jnp.array([0.5, 1.5, -0.5]), jnp.array([1.0, 1.0, 0.0]))
    assert jnp.isfinite(out[0]) and jnp.isnan(out[1:]).all()


@pytest.mark.parametrize("call,match", [
    (lambda: losses.cross_entropy(Z, Y, reduction="avg"), "reduction: expected one of"),
    (lambda: losses.cross_entropy(Z, Y[:3]), r"labels must have shape \(4,\).*got \(3,\)"),
    (lambda: losses.cross_entropy(Z, Y.astype(jnp.float32)), "integer class index.*float32"),
    (lambda: losses.mse_loss(jnp.ones(3), jnp.ones((3, 1))), r"target must have the shape"),
    (lambda: losses.cross_entropy(Z, Y, mask=jnp.ones(3)), r"mask: expected shape \(4,\)"),
])
def test_bad_inputs_raise_named_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
