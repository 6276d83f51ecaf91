"""Loss functions with PyTorch's names, semantics and ``reduction=``.

Each loss computes one value per example (per element for ``mse_loss`` and
the binary losses, as in PyTorch) and reduces in one place, ``_reduce``:

* ``reduction="mean"`` (default): the average; with a ``mask`` it is
  ``sum(loss * mask) / sum(mask)``, so padded rows of a batch do not count.
* ``reduction="sum"``: ``sum(loss * mask)``.
* ``reduction="none"``: the unreduced values (times ``mask`` if given).

``mask`` is a per-example weight or 0/1 mask of shape ``(N,)``. It is *not*
PyTorch's per-class ``weight=`` argument.

>>> logits = jnp.array([[2.0, 0.5], [0.1, 1.0]])
>>> cross_entropy(logits, jnp.array([0, 1]))
Array(0.2712..., dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "mse_loss",
    "nll_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


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
    scores, labels = jnp.asarray(scores), jnp.asarray(labels)
    if scores.ndim < 1:
        raise ValueError(f"{fn}: {name} must have a class dimension, got shape {scores.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{fn}: labels must be integer class indices, got dtype {labels.dtype}")
    if labels.shape != scores.shape[:-1]:
        raise ValueError(f"{fn}: labels must have shape {scores.shape[:-1]} ({name} "
                         f"shape {scores.shape} minus the class dimension), got {labels.shape}")
    if _is_concrete(labels) and labels.size:
        lo, hi = int(jnp.min(labels)), int(jnp.max(labels))
        if lo < 0 or hi >= scores.shape[-1]:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{fn}: labels must lie in [0, {scores.shape[-1] - 1}] "
                             f"({scores.shape[-1]} classes), got {bad}")
    return scores, labels


def _pick(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    # Out-of-range labels under jit give NaN (not a silently clamped class),
    # which the trainer's finiteness check reports.
    return jnp.take_along_axis(log_probs, labels[..., None], axis=-1, mode="fill",
                               fill_value=jnp.nan)[..., 0]


def nll_loss(log_probs, labels, *, reduction: str = "mean", mask=None) -> jax.Array:
    """Negative log-likelihood of integer ``labels`` under ``log_probs`` (``F.nll_loss``).

    Args:
      log_probs: ``(N, C)`` log-probabilities, e.g. from ``jax.nn.log_softmax``.
      labels: ``(N,)`` integer class indices in ``[0, C)``.
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
      labels: ``(N,)`` integer class indices in ``[0, C)``.
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
      probs: float array of any shape, probabilities in ``[0, 1]``.
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
      input: float array of any shape, the predictions.
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
    return _reduce(jnp.square(input - target.astype(input.dtype)), reduction, mask)

