"""Classification metrics as pure array functions (sklearn's ``(y_true, y_pred)`` order).

``y_true`` holds integer class indices ``(N,)``. ``y_pred`` may be predicted
class indices ``(N,)`` or scores ``(N, C)`` (logits, probabilities or
log-probabilities), which are reduced with ``argmax``. What would score
silently wrong is refused: float (e.g. one-hot) ``y_true`` (``TypeError``: pass
``y_true.argmax(-1)``), float ``y_pred`` without a class axis, and the scores
``(N, 1)`` of a 1-output model, which always argmax to class 0 (``ValueError``:
threshold them yourself, ``y_pred[..., 0] > 0``).

>>> accuracy(jnp.array([0, 1, 1]), jnp.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]))
Array(0.6666667, dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["accuracy", "confusion_matrix", "precision_recall_f1"]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)


def _predictions(y_true, y_pred) -> tuple[jax.Array, jax.Array]:
    """Check the pair and reduce scores to class indices; refuse what would score silently wrong.

    A 1-output model's scores ``(N, 1)`` would always argmax to class 0, and
    one-hot ``y_true`` compared element-wise would count zeros as hits.
    """
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    one_hot_fix = "for one-hot labels pass y_true.argmax(-1)"
    if y_pred.ndim == y_true.ndim + 1:
        if y_pred.shape[-1] < 2:
            raise ValueError(f"y_pred: expected scores for 2 or more classes, got shape "
                             f"{y_pred.shape}; for a 1-output (binary) model pass the classes "
                             f"(y_pred[..., 0] > 0).astype(jnp.int32) for logits (> 0.5 for "
                             f"probabilities)")
        y_pred = jnp.argmax(y_pred, axis=-1)
    elif y_pred.shape == y_true.shape and jnp.issubdtype(y_pred.dtype, jnp.floating):
        raise TypeError(f"y_pred: expected integer class indices of shape {y_true.shape} or "
                        f"scores of shape {y_true.shape + ('C',)}, got {y_pred.dtype} scores "
                        f"of y_true's shape; {one_hot_fix}")
    floating = jnp.issubdtype(y_true.dtype, jnp.floating)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred: expected shape {y_true.shape} (class indices) or "
                         f"{y_true.shape + ('C',)} (scores), got {y_pred.shape}"
                         + (f"; {one_hot_fix}" if floating and y_true.ndim > 1 else ""))
    if floating:
        raise TypeError(f"y_true: expected integer class indices, got {y_true.dtype} of shape "
                        f"{y_true.shape}; {one_hot_fix}, for whole-number floats "
                        f"y_true.astype(jnp.int32)")
    return y_true, y_pred


def accuracy(y_true, y_pred, *, mask=None) -> jax.Array:
    """Fraction of correct predictions; with ``mask``, over the masked-in examples.

    Args:
      y_true: ``(N,)`` integer class indices.
      y_pred: ``(N,)`` predicted class indices, or ``(N, C)`` scores (reduced
        with ``argmax``).
      mask: optional ``(N,)`` 0/1 mask or per-example weights.

    Returns:
      A float32 scalar in ``[0, 1]``.

    >>> accuracy(jnp.array([0, 1, 1]), jnp.array([0, 1, 0]))
    Array(0.6666667, dtype=float32)
    >>> accuracy(jnp.array([0, 1, 1]), jnp.array([0, 1, 0]), mask=jnp.array([1, 1, 0]))
    Array(1., dtype=float32)
    """
    y_true, y_pred = _predictions(y_true, y_pred)
    correct = (y_true == y_pred).astype(jnp.float32)
    if mask is None:
        return jnp.mean(correct)
    mask = jnp.asarray(mask, jnp.float32)
    return jnp.sum(correct * mask) / jnp.sum(mask)


def confusion_matrix(y_true, y_pred, num_classes: int) -> jax.Array:
    """``(num_classes, num_classes)`` counts; row = true class, column = predicted.

    Args:
      y_true: ``(N,)`` integer class indices.
      y_pred: ``(N,)`` predicted class indices, or ``(N, C)`` scores (reduced
        with ``argmax``).
      num_classes: the number of classes ``C``, a positive int; a pair with
        either index outside ``[0, C)`` is not counted.

    Returns:
      An int32 array of shape ``(num_classes, num_classes)``.

    >>> confusion_matrix(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), num_classes=2)
    Array([[1, 0],
           [1, 1]], dtype=int32)
    >>> int(confusion_matrix(jnp.array([0]), jnp.array([2]), num_classes=2).sum())
    0
    """
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    y_true, y_pred = _predictions(y_true, y_pred)
    t, p = y_true.reshape(-1), y_pred.reshape(-1)
    counted = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    # Out-of-range pairs go to index C*C, past the end, which mode="drop" ignores;
    # t * C + p alone would move e.g. (0, C) into the next row, (1, 0).
    flat = jnp.where(counted, t * num_classes + p, num_classes * num_classes)
    counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[flat].add(1, mode="drop")
    return counts.reshape(num_classes, num_classes)


def precision_recall_f1(y_true, y_pred, num_classes: int, *,
                        average: str = "macro") -> tuple[jax.Array, jax.Array, jax.Array]:
    """Precision, recall and F1, averaged like sklearn's ``precision_recall_fscore_support``.

    Args:
      y_true: ``(N,)`` integer class indices.
      y_pred: ``(N,)`` predicted class indices, or ``(N, C)`` scores (reduced
        with ``argmax``).
      num_classes: the number of classes ``C``, a positive int; pairs with an
        index outside ``[0, C)`` are not counted.
      average: ``"macro"`` (unweighted mean over classes), ``"micro"`` (global
        counts; equals accuracy for single-label data) or ``"none"`` (per class).
        Classes with no predictions (or no examples) score 0, as sklearn's
        ``zero_division=0``.

    Returns:
      ``(precision, recall, f1)``: three float32 scalars, or three ``(C,)``
      arrays for ``average="none"``.

    >>> p, r, f = precision_recall_f1(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), 2,
    ...                               average="none")
    >>> p.tolist(), r.tolist()
    ([0.5, 1.0], [1.0, 0.5])
    >>> round(float(precision_recall_f1(jnp.array([0, 1]), jnp.array([0, 1]), 2)[2]), 4)
    1.0
    """
    if average not in ("macro", "micro", "none"):
        raise ValueError(f"average: expected 'macro', 'micro' or 'none', got {average!r}")
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(jnp.float32)
    tp = jnp.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()

    def safe_div(a, b):
        return jnp.where(b > 0, a / jnp.where(b > 0, b, 1), 0.0)

    precision, recall = safe_div(tp, predicted), safe_div(tp, actual)
    f1 = safe_div(2 * precision * recall, precision + recall)
    if average == "macro":
        return precision.mean(), recall.mean(), f1.mean()
    return precision, recall, f1
