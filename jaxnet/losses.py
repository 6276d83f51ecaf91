"""Loss functions with PyTorch's names, semantics and ``reduction=``.

Each loss computes one value per example (per element for ``mse_loss`` and
the binary losses, as in PyTorch) and reduces in one place, ``_reduce``:

* ``reduction="mean"`` (default): the average; with a ``mask`` it is
  ``sum(loss * mask) / sum(mask)``, so padded rows of a batch do not count.
* ``reduction="sum"``: ``sum(loss * mask)``.
* ``reduction="none"``: the unreduced values (times ``mask`` if given).

``mask`` is a per-example weight or 0/1 mask of shape ``(N,)``. It is *not*
PyTorch's per-class ``weight=`` argument.

Where PyTorch raises, so do these, eagerly: class ``labels`` outside ``[0, C)``
(``ValueError`` naming the first bad value and its index; int64 labels are
checked before JAX's int32 could wrap them), labels that are not a signed
integer array (``TypeError``, also under ``jit``: the dtype is static),
integer ``mse_loss`` input, ``binary_cross_entropy`` probabilities outside
``[0, 1]``. Under ``jit`` values cannot raise: an out-of-range label or
probability makes that example's loss NaN (never another class's loss), so
the reduced loss is NaN and the trainer's finiteness check stops the run.
There is no ``ignore_index``: a masked-out row needs a valid label too.

>>> logits = jnp.array([[2.0, 0.5], [0.1, 1.0]])
>>> cross_entropy(logits, jnp.array([0, 1]))
Array(0.2712..., dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "mse_loss",
    "nll_loss",
]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: jax.Array, reduction: str, mask: jax.Array | None) -> jax.Array:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != loss.shape[: mask.ndim] or mask.ndim == 0:
            raise ValueError(f"mask: expected shape ({loss.shape[0]},) (one value per example), "
                             f"got {mask.shape}")
        mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (loss.ndim - mask.ndim)),
                                loss.shape).astype(loss.dtype)
        loss = loss * mask
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    denominator = loss.size if mask is None else jnp.sum(mask)
    return jnp.sum(loss) / denominator


def _check_class_inputs(name: str, scores, labels, fn: str):
    """Check and convert ``scores`` and ``labels``; labels are range-checked on the host.

    The checks are ``_checks.class_labels`` (shared with ``fit`` and
    ``evaluate``): on a numpy copy *before* the conversion to a JAX array,
    whose default int32 would wrap int64 labels >= 2**32 into valid classes.
    Traced labels (under ``jit``) cannot raise: ``_pick`` gives their
    out-of-range examples a NaN loss instead.
    """
    scores = jnp.asarray(scores)
    if scores.ndim < 1:
        raise ValueError(f"{fn}: {name} must have a class dimension, got shape {scores.shape}")
    host = labels if isinstance(labels, jax.core.Tracer) else np.asarray(labels)
    if host.shape != scores.shape[:-1] and jnp.issubdtype(host.dtype, jnp.signedinteger):
        raise ValueError(f"{fn}: labels must have shape {scores.shape[:-1]} ({name} "
                         f"shape {scores.shape} minus the class dimension), got {host.shape}")
    host = _checks.class_labels(fn, host, scores.shape[-1])  # dtype first, then the range
    return scores, jnp.asarray(host)


def _pick(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``log_probs[..., label]`` per example; NaN where the label is not in ``[0, C)``.

    Only traced labels (under ``jit``) reach here out of range: NaN, not the
    class ``C - k`` that a negative index would wrap to, so the trainer's
    finiteness check stops the run. Valid labels are bit-identical.
    """
    valid = (labels >= 0) & (labels < log_probs.shape[-1])
    picked = jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1,
                                 mode="clip")
    return jnp.where(valid, picked[..., 0], jnp.nan)


def nll_loss(log_probs, labels, *, reduction: str = "mean", mask=None) -> jax.Array:
    """Negative log-likelihood of integer ``labels`` under ``log_probs`` (``F.nll_loss``).

    Args:
      log_probs: ``(N, C)`` log-probabilities, e.g. from ``jax.nn.log_softmax``.
      labels: ``(N,)`` signed integer class indices in ``[0, C)`` (see the
        module docstring for out-of-range labels).
      reduction: ``"mean" | "sum" | "none"``.
      mask: optional ``(N,)`` per-example weights or 0/1 mask.

    Returns:
      A float scalar for ``"mean"`` and ``"sum"``; the ``(N,)`` per-example
      losses for ``"none"``.

    >>> nll_loss(jnp.log(jnp.array([[0.5, 0.5], [0.1, 0.9]])), jnp.array([0, 1]))
    Array(0.3992..., dtype=float32)
    """
    log_probs, labels = _check_class_inputs("log_probs", log_probs, labels, "nll_loss")
    return _reduce(-_pick(log_probs, labels), reduction, mask)


def cross_entropy(logits, labels, *, reduction: str = "mean", mask=None,
                  label_smoothing: float = 0.0) -> jax.Array:
    """Softmax cross-entropy of integer ``labels`` given raw ``logits`` (``F.cross_entropy``).

    Equal to ``nll_loss(jax.nn.log_softmax(logits), labels)`` when
    ``label_smoothing`` is 0; otherwise, like PyTorch, the target is
    ``(1 - label_smoothing)`` on the label plus ``label_smoothing / C`` on
    every class.

    Args:
      logits: ``(N, C)`` unnormalised scores.
      labels: ``(N,)`` signed integer class indices in ``[0, C)`` (see the
        module docstring for out-of-range labels).
      reduction: ``"mean" | "sum" | "none"``.
      mask: optional ``(N,)`` per-example weights or 0/1 mask.
      label_smoothing: in ``[0, 1]``.

    Returns:
      A float scalar for ``"mean"`` and ``"sum"``; the ``(N,)`` per-example
      losses for ``"none"``.

    >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
    >>> round(float(cross_entropy(logits, jnp.array([0, 1]))), 4)
    0.1269
    >>> cross_entropy(logits, jnp.array([0, 1]), reduction="none").shape
    (2,)
    """
    logits, labels = _check_class_inputs("logits", logits, labels, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a number in [0, 1], got {label_smoothing!r}")
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -_pick(log_probs, labels)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * jnp.mean(log_probs, axis=-1)
    return _reduce(loss, reduction, mask)


def _check_same_shape(fn: str, a_name: str, a, b_name: str, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"{fn}: {b_name} must have the shape of {a_name} {a.shape}, "
                         f"got {b.shape}")
    return a, b


def binary_cross_entropy(probs, targets, *, reduction: str = "mean", mask=None) -> jax.Array:
    """Binary cross-entropy of probabilities (``F.binary_cross_entropy``).

    Like PyTorch, each log is clamped at -100, so probabilities of exactly 0 or
    1 give finite losses.

    Args:
      probs: float array of any shape, probabilities in ``[0, 1]``; others
        raise ``ValueError`` (under ``jit``: a NaN loss for that element).
      targets: array of ``probs``' shape, targets in ``[0, 1]`` (cast to
        ``probs.dtype``).
      reduction: ``"mean" | "sum" | "none"``.
      mask: optional ``(N,)`` per-example weights or 0/1 mask over the first axis.

    Returns:
      A float scalar for ``"mean"`` and ``"sum"``; the element-wise losses
      (``probs``' shape) for ``"none"``.

    >>> binary_cross_entropy(jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), reduction="none")
    Array([100.,  -0.], dtype=float32)
    """
    probs, targets = _check_same_shape("binary_cross_entropy", "probs", probs, "targets", targets)
    if not isinstance(probs, jax.core.Tracer):
        host = np.asarray(probs)
        bad = ~((host >= 0) & (host <= 1))  # NaN is out of range too, as in PyTorch
        if bad.any():
            index = _checks.first_bad(bad)
            raise ValueError(f"binary_cross_entropy: probs: expected probabilities in [0, 1], "
                             f"got {host[index]!s} at index {index}; pass raw scores to "
                             f"binary_cross_entropy_with_logits")
    targets = targets.astype(probs.dtype)
    log_p = jnp.maximum(jnp.log(probs), -100.0)
    log_1mp = jnp.maximum(jnp.log1p(-probs), -100.0)
    return _reduce(-(targets * log_p + (1 - targets) * log_1mp), reduction, mask)


def binary_cross_entropy_with_logits(logits, targets, *, reduction: str = "mean",
                                     mask=None) -> jax.Array:
    """Sigmoid + binary cross-entropy in one stable step (``F.binary_cross_entropy_with_logits``).

    Args:
      logits: float array of any shape, raw scores (before the sigmoid).
      targets: array of ``logits``' shape, targets in ``[0, 1]`` (cast to
        ``logits.dtype``).
      reduction: ``"mean" | "sum" | "none"``.
      mask: optional ``(N,)`` per-example weights or 0/1 mask over the first axis.

    Returns:
      A float scalar for ``"mean"`` and ``"sum"``; the element-wise losses
      (``logits``' shape) for ``"none"``.

    >>> binary_cross_entropy_with_logits(jnp.array([0.0]), jnp.array([1.0]))
    Array(0.6931..., dtype=float32)
    """
    logits, targets = _check_same_shape("binary_cross_entropy_with_logits", "logits", logits,
                                        "targets", targets)
    targets = targets.astype(logits.dtype)
    loss = jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return _reduce(loss, reduction, mask)


def mse_loss(input, target, *, reduction: str = "mean", mask=None) -> jax.Array:  # noqa: A002
    """Mean squared error, element-wise like ``nn.MSELoss``.

    Args:
      input: floating-point array of any shape, the predictions (integer
        input raises ``TypeError``, as in PyTorch).
      target: array of ``input``'s shape (cast to ``input.dtype``).
      reduction: ``"mean" | "sum" | "none"``.
      mask: optional ``(N,)`` per-example weights or 0/1 mask over the first axis.

    Returns:
      A float scalar for ``"mean"`` and ``"sum"``; the element-wise squared
      errors (``input``'s shape) for ``"none"``.

    >>> mse_loss(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]))
    Array(2., dtype=float32)
    """
    input, target = _check_same_shape("mse_loss", "input", input, "target", target)
    if not jnp.issubdtype(input.dtype, jnp.floating):
        # PyTorch refuses integer MSE too; squaring int32 would overflow silently.
        raise TypeError(f"mse_loss: input: expected a floating-point array, got {input.dtype}; "
                        f"cast with input.astype(jnp.float32)")
    return _reduce(jnp.square(input - target.astype(input.dtype)), reduction, mask)

