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
