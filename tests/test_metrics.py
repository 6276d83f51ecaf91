import jax
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxnet import metrics


@pytest.fixture
def preds():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    y_pred[y_pred == 3] = 2  # class 3 is never predicted: zero-division path
    return y_true, y_pred


def test_accuracy_matches_sklearn_and_accepts_scores(preds):
    y_true, y_pred = preds
    np.testing.assert_allclose(metrics.accuracy(y_true, y_pred),
                               skm.accuracy_score(y_true, y_pred), rtol=1e-6)
    scores = np.eye(4)[y_pred] * 3.0
    np.testing.assert_allclose(metrics.accuracy(y_true, scores),
                               skm.accuracy_score(y_true, y_pred), rtol=1e-6)
    mask = np.arange(200) < 50
    np.testing.assert_allclose(metrics.accuracy(y_true, y_pred, mask=mask),
                               skm.accuracy_score(y_true[:50], y_pred[:50]), rtol=1e-6)


def test_confusion_matrix_matches_sklearn(preds):
    y_true, y_pred = preds
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred, num_classes=4),
                                  skm.confusion_matrix(y_true, y_pred, labels=range(4)))


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_precision_recall_f1_match_sklearn(preds, average):
    y_true, y_pred = preds
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                     labels=range(4), zero_division=0)
    np.testing.assert_allclose(metrics.precision_recall_f1(y_true, y_pred, 4, average=average),
                               (p, r, f), rtol=1e-5)


def test_per_class_scores(preds):
    y_true, y_pred = preds
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(4),
                                                     zero_division=0)
    got = metrics.precision_recall_f1(y_true, y_pred, 4, average="none")
    for g, e in zip(got, (p, r, f), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"y_pred: expected shape \(3,\)"):
        metrics.accuracy(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="num_classes: expected a positive int, got 0"):
        metrics.confusion_matrix(np.zeros(3, int), np.zeros(3, int), num_classes=0)
    with pytest.raises(ValueError, match="average: expected"):
        metrics.precision_recall_f1(np.zeros(3, int), np.zeros(3, int), 2, average="weighted")


@pytest.mark.parametrize("y_true,y_pred", [([0], [2]), ([2], [0]), ([0], [-1]), ([-1], [1]),
                                           ([0, 1, 5], [0, 1, 1])])
def test_confusion_matrix_does_not_count_out_of_range_indices(y_true, y_pred):
    # [0] vs [2] with 2 classes used to land in cell (1, 0)
    cm = metrics.confusion_matrix(np.array(y_true), np.array(y_pred), 2)
    in_range = [(t, p) for t, p in zip(y_true, y_pred, strict=True) if 0 <= t < 2 and 0 <= p < 2]
    assert int(cm.sum()) == len(in_range)
    for t, p in in_range:
        assert cm[t, p] >= 1
    cm_jit = jax.jit(metrics.confusion_matrix, static_argnums=2)(np.array(y_true),
                                                                 np.array(y_pred), 2)
    np.testing.assert_array_equal(cm, cm_jit)


def test_precision_recall_f1_ignores_out_of_range_predictions():
    p, r, _ = metrics.precision_recall_f1(np.array([0, 1]), np.array([0, 2]), 2, average="none")
    assert p.tolist() == [1.0, 0.0] and r.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("fn", [metrics.accuracy, lambda t, p: metrics.confusion_matrix(t, p, 2)])
def test_one_output_model_is_refused_with_the_fix(fn):
    # (N, 1) logits used to give accuracy 1.0: argmax over one column is always 0
    with pytest.raises(ValueError, match=r"y_pred: expected scores for 2 or more classes, got "
                                         r"shape \(3, 1\).*> 0"):
        fn(np.array([0, 0, 0]), np.array([[0.3], [-2.0], [1.0]]))


def test_one_hot_labels_are_refused_with_the_fix():
    y = np.array([0, 2, 1])
    one_hot, scores = np.eye(3)[y], np.eye(3)[[0, 2, 2]] * 2.0
    with pytest.raises(TypeError, match=r"y_pred: expected integer class indices .* got float"
                                        r".*y_true.argmax\(-1\)"):
        metrics.accuracy(one_hot, scores)
    with pytest.raises(TypeError, match=r"y_true.argmax\(-1\)"):
        metrics.accuracy(one_hot.astype(np.int32), scores)
    with pytest.raises(TypeError, match=r"y_true: expected integer class indices, got float32"
                                        r".*y_true.astype\(jnp.int32\)"):
        metrics.accuracy(y.astype(np.float32), y)
    with pytest.raises(ValueError, match=r"y_pred: expected shape \(3, 3\).*y_true.argmax"):
        metrics.accuracy(one_hot, y)
    with pytest.raises(TypeError, match=r"y_true.argmax\(-1\)"):
        metrics.confusion_matrix(one_hot, scores, 3)
    assert float(metrics.accuracy(one_hot.argmax(-1), scores)) == pytest.approx(2 / 3)
