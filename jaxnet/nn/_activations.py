"""Layers without parameters: the activations, ``Softmax``/``LogSoftmax`` and ``Flatten``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._module import _Described


class _Stateless(_Described):
    """A layer without parameters: a named function of its input."""


class Identity(_Stateless):
    """Returns its input (``nn.Identity``).

    >>> Identity()(jnp.array([1.0, -2.0])).tolist()
    [1.0, -2.0]
    """

    def __call__(self, x):
        return x


class ReLU(_Stateless):
    """``max(x, 0)`` elementwise (``nn.ReLU``): any shape, same shape and dtype out.

    Args:
      inplace: accepted for PyTorch's ``nn.ReLU(inplace=True)``; JAX arrays are
        never changed in place, and the output is the same either way.

    >>> ReLU(inplace=True)(jnp.array([-1.0, 0.0, 2.0])).tolist()
    [0.0, 0.0, 2.0]
    """

    def __init__(self, inplace: bool = False):
        del inplace  # the result is identical; only PyTorch's memory use differs

    def __call__(self, x):
        return jax.nn.relu(x)


class Sigmoid(_Stateless):
    """``1 / (1 + exp(-x))`` elementwise (``nn.Sigmoid``): any shape, same shape out.

    >>> Sigmoid()(jnp.array([0.0])).tolist()
    [0.5]
    """

    def __call__(self, x):
        return jax.nn.sigmoid(x)


class Tanh(_Stateless):
    """``tanh(x)`` elementwise (``nn.Tanh``): any shape, same shape out.

    >>> Tanh()(jnp.array([0.0, 1.0])).round(4).tolist()
    [0.0, 0.7616]
    """

    def __call__(self, x):
        return jnp.tanh(x)


class GELU(_Stateless):
    """The exact (erf) GELU, as PyTorch's default ``nn.GELU()``: any shape, same shape out.

    >>> GELU()(jnp.array([-1.0, 0.0, 1.0])).round(4).tolist()
    [-0.1587, 0.0, 0.8413]
    """

    def __call__(self, x):
        return jax.nn.gelu(x, approximate=False)


class Softmax(_Described):
    """``nn.Softmax(dim)``: probabilities along ``dim`` (default the last axis).

    Args:
      dim: the axis that sums to 1; the output has the input's shape.

    >>> Softmax(dim=1)(jnp.zeros((1, 4)))
    Array([[0.25, 0.25, 0.25, 0.25]], dtype=float32)
    """

    def __init__(self, dim: int = -1):
        self.dim = int(dim)

    def __call__(self, x):
        return jax.nn.softmax(x, axis=self.dim)

    def describe(self) -> str:
        return f"Softmax(dim={self.dim})"


class LogSoftmax(_Described):
    """``nn.LogSoftmax(dim)``: log-probabilities along ``dim``, for ``losses.nll_loss``.

    Args:
      dim: the axis normalised over; the output has the input's shape.

    >>> LogSoftmax()(jnp.log(jnp.array([[1.0, 3.0]]))).round(4).tolist()
    [[-1.3863, -0.2877]]
    """

    def __init__(self, dim: int = -1):
        self.dim = int(dim)

    def __call__(self, x):
        return jax.nn.log_softmax(x, axis=self.dim)

    def describe(self) -> str:
        return f"LogSoftmax(dim={self.dim})"


class Flatten(_Described):
    """``nn.Flatten(start_dim=1, end_dim=-1)``: e.g. ``(N, 28, 28) -> (N, 784)``.

    Args:
      start_dim: first axis merged into one.
      end_dim: last axis merged (inclusive; negative counts from the end).

    >>> Flatten()(jnp.zeros((2, 28, 28))).shape
    (2, 784)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def __call__(self, x):
        # PyTorch raises for an axis past the input's (a modulo would flatten another axis)
        for name, dim in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -x.ndim <= dim < x.ndim:
                raise IndexError(f"Flatten: expected {name} in [{-x.ndim}, {x.ndim}) for a "
                                 f"{x.ndim}-D input of shape {tuple(x.shape)}, got {dim}")
        start = self.start_dim % x.ndim
        end = self.end_dim % x.ndim
        if start > end:
            raise ValueError(f"Flatten: expected start_dim before end_dim, got axes {start} "
                             f"and {end} of a {x.ndim}-D input")
        return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])

    def describe(self) -> str:
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"
