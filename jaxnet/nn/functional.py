"""PyTorch's ``torch.nn.functional``: ``import jaxnet.nn.functional as F``.

The names the course uses, with PyTorch's arguments (``dim=``, ``reduction=``):
``relu``, ``sigmoid``, ``tanh``, ``softmax``, ``log_softmax``, ``one_hot``,
``dropout`` and the losses of ``jaxnet.losses``. Randomness is an argument:
``dropout`` in training takes ``key=`` (a ``jax.random`` key) instead of reading
a global generator.

For one release the module itself is also callable: ``nn.functional(model)`` is
the old name of ``nn.split(model)`` and warns (``DeprecationWarning``).

>>> import jax.numpy as jnp
>>> import jaxnet.nn.functional as F
>>> F.relu(jnp.array([-1.0, 2.0]))
Array([0., 2.], dtype=float32)
>>> F.log_softmax(jnp.zeros((1, 2)), dim=1)
Array([[-0.6931..., -0.6931...]], dtype=float32)
"""

from __future__ import annotations

import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ..losses import binary_cross_entropy as binary_cross_entropy
from ..losses import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from ..losses import cross_entropy as cross_entropy
from ..losses import mse_loss as mse_loss
from ..losses import nll_loss as nll_loss
from ._functional import split as _split

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "one_hot",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)


def relu(x: jax.Array, inplace: bool = False) -> jax.Array:
    """``max(x, 0)`` elementwise (``F.relu``).

    ``inplace`` is accepted for PyTorch's ``F.relu(x, inplace=True)``: JAX
    arrays never change in place, and the result is the same.

    >>> relu(jnp.array([-2.0, 0.5]), inplace=True)
    Array([0. , 0.5], dtype=float32)
    """
    del inplace
    return jax.nn.relu(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """``1 / (1 + exp(-x))`` elementwise (``F.sigmoid``).

    >>> sigmoid(jnp.array([0.0]))
    Array([0.5], dtype=float32)
    """
    return jax.nn.sigmoid(x)


def tanh(x: jax.Array) -> jax.Array:
    """Hyperbolic tangent elementwise (``F.tanh``).

    >>> tanh(jnp.array([0.0]))
    Array([0.], dtype=float32)
    """
    return jnp.tanh(x)


def _dim(name: str, x, dim) -> int:
    if dim is None:
        raise TypeError(f"{name}: expected dim=, the axis to normalise over, got none "
                        f"(PyTorch's implicit dim is deprecated): F.{name}(x, dim=1) for "
                        f"(N, C) scores")
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
        raise TypeError(f"{name}: expected dim= an int axis, got {dim!r}")
    ndim = jnp.ndim(x)
    if not -ndim <= dim < ndim:
        raise ValueError(f"{name}: expected dim in [{-ndim}, {ndim}) for a {ndim}-D input, "
                         f"got {dim}")
    return int(dim)


def softmax(x: jax.Array, dim: int | None = None) -> jax.Array:
    """``exp(x) / sum(exp(x))`` along ``dim`` (``F.softmax(x, dim=1)``).

    Args:
      x: scores, e.g. logits ``(N, C)``.
      dim: the axis that sums to 1 (required: PyTorch's implicit choice is deprecated).

    Returns:
      Probabilities, the shape of ``x``.

    >>> softmax(jnp.array([[0.0, 0.0]]), dim=1)
    Array([[0.5, 0.5]], dtype=float32)
    """
    return jax.nn.softmax(x, axis=_dim("softmax", x, dim))


def log_softmax(x: jax.Array, dim: int | None = None) -> jax.Array:
    """``log(softmax(x, dim))``, computed stably (``F.log_softmax(x, dim=1)``).

    Args:
      x: scores, e.g. logits ``(N, C)``.
      dim: the axis to normalise over (required, as for ``softmax``).

    Returns:
      Log-probabilities, the shape of ``x`` (``nll_loss`` takes them).

    >>> log_softmax(jnp.array([[0.0, 0.0]]), dim=-1)
    Array([[-0.6931..., -0.6931...]], dtype=float32)
    """
    return jax.nn.log_softmax(x, axis=_dim("log_softmax", x, dim))


def one_hot(labels, num_classes: int = -1) -> jax.Array:
    """Class indices to one-hot rows (``F.one_hot``), as int32 (PyTorch: int64).

    Args:
      labels: integer class indices, any shape.
      num_classes: the number of classes; ``-1`` (default) takes ``max(labels) + 1``
        (needs concrete labels: pass it under ``jit``).

    Returns:
      ``labels.shape + (num_classes,)`` of 0/1.

    Raises:
      TypeError: labels are not integers. ValueError: a label is negative or not
        below ``num_classes`` (checked when the labels are concrete).

    >>> one_hot(jnp.array([0, 2]), 3)
    Array([[1, 0, 0],
           [0, 0, 1]], dtype=int32)
    """
    dtype = labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"one_hot: expected integer class indices, got dtype {dtype}: "
                        f"labels.astype(jnp.int32) if they are whole numbers")
    concrete = not isinstance(labels, jax.core.Tracer)
    if concrete:
        values = np.asarray(labels)
        if num_classes == -1:
            num_classes = int(values.max()) + 1 if values.size else 0
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            raise ValueError(f"one_hot: expected labels in [0, {num_classes}), got "
                             f"{values[bad].flat[0]}")
    elif num_classes == -1:
        raise ValueError("one_hot: expected num_classes under jit (the output shape), got -1")
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.int32)


def dropout(x: jax.Array, p: float = 0.5, training: bool = True, *,
            key: jax.Array | None = None) -> jax.Array:
    """Zero each element with probability ``p``, scale the rest by ``1/(1-p)`` (``F.dropout``).

    Args:
      x: any array.
      p: the probability of zeroing, in ``[0, 1]``.
      training: ``False`` returns ``x`` unchanged (PyTorch's default is ``True``).
      key: a ``jax.random`` key, required when training (no global generator).

    Returns:
      An array like ``x``.

    >>> dropout(jnp.ones(3), 0.5, training=False)
    Array([1., 1., 1.], dtype=float32)
    >>> y = dropout(jnp.ones(1000), 0.5, key=jax.random.key(0))
    >>> sorted(set(y.tolist()))
    [0.0, 2.0]
    """
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"dropout: expected p a probability in [0, 1], got {p!r}")
    if not training or p == 0:
        return x
    if key is None:
        raise ValueError("dropout: expected key= a jax.random key when training=True, got "
                         "none: F.dropout(x, p, training=True, key=key) (in a model, "
                         "nn.Dropout(p) gets its key from apply(..., train=True, rng=key))")
    if p == 1:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(key, 1.0 - p, jnp.shape(x))
    return jnp.where(keep, x / (1.0 - p), 0).astype(jnp.result_type(x))


class _CallableModule(types.ModuleType):
    """This module, also callable for one release: ``nn.functional(model)`` → ``nn.split``."""

    def __call__(self, model):
        warnings.warn("nn.functional(model) is now nn.split(model) (same apply, params, "
                      "state); jaxnet.nn.functional is PyTorch's F", DeprecationWarning,
                      stacklevel=2)
        return _split(model)


sys.modules[__name__].__class__ = _CallableModule
