"""``TrainState``: everything that changes during training, as one pytree, and its creation."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from .._checks import seed_int
from .._tree import leaf_paths


@struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    Attributes:
      step: int32 scalar, the number of optimizer steps taken.
      params: the model parameters (a nested dict of arrays).
      opt_state: the optax optimizer state.
      rng: a raw ``uint32[2]`` ``jax.random`` key; step ``s`` uses
        ``fold_in(rng, s)`` for Dropout, so a resumed run draws the same keys.
      model_state: non-parameter model state, e.g. BatchNorm running
        statistics (``{}`` for most models).

    >>> import optax
    >>> from jaxnet import nn
    >>> apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state, seed=0)
    >>> int(state.step), state.rng.shape, state.rng.dtype
    (0, (2,), dtype('uint32'))
    >>> state
    TrainState(step=0, params=22 parameters in 4 arrays, opt_state={}, rng=uint32[2], \
model_state={})
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    model_state: Any = struct.field(default_factory=dict)

    def __repr__(self) -> str:
        """One short line: the step and the sizes, not the arrays (``print(state)``)."""
        return (f"TrainState(step={_scalar(self.step)}, params={_sizes(self.params, 'parameters')}"
                f", opt_state={_sizes(self.opt_state, 'values')}, rng={_scalar(self.rng)}, "
                f"model_state={_sizes(self.model_state, 'values')})")

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation, *,
               model_state: Any = None, seed: int = 0) -> TrainState:
        """Fresh state: step 0, ``optimizer.init(params)``, key from ``seed``.

        Args:
          params: the model's parameters (``nn.split(model).params``).
          optimizer: any optax ``GradientTransformation``, e.g. ``optax.adam(1e-3)``.
          model_state: the model's non-parameter state (``nn.split(model).state``).
          seed: int in [0, 2**32) for the per-step keys (Dropout).

        Returns:
          A ``TrainState`` with an int32 scalar ``step`` of 0, copies of
          ``params`` and ``model_state``, ``optimizer.init(params)`` and a
          ``uint32[2]`` key.

        >>> import optax
        >>> from jaxnet import nn
        >>> _, params, _ = nn.split(nn.MLP(2, [4], 2, rngs=0))
        >>> state = TrainState.create(params, optax.adam(1e-3))
        >>> int(state.step), state.model_state
        (0, {})
        """
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer: expected an optax GradientTransformation such as "
                            f"optax.adam(1e-3), got {type(optimizer).__name__}")
        seed = seed_int("seed", seed)
        _check_arrays("params", params)
        _check_arrays("model_state", model_state or {})
        params, model_state, opt_state = _fresh_state(params, model_state or {}, optimizer)
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                   rng=jax.random.PRNGKey(seed), model_state=model_state)


def _scalar(a: Any) -> str:
    """``938`` for a live scalar; the dtype and shape otherwise (a key, a tracer, consumed)."""
    if isinstance(a, jax.Array) and a.is_deleted():
        return "<consumed>"
    if np.ndim(a) == 0 and not isinstance(a, jax.core.Tracer):
        return str(np.asarray(a).item())
    return f"{np.dtype(a.dtype).name}{list(np.shape(a))}"


def _sizes(tree: Any, what: str) -> str:
    """``535,818 parameters in 6 arrays``; ``{}`` for an empty tree."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return "{}"
    if any(isinstance(a, jax.Array) and a.is_deleted() for a in leaves):
        return "<consumed>"
    return f"{sum(int(np.size(a)) for a in leaves):,} {what} in {len(leaves)} arrays"


def _check_arrays(name: str, tree: Any) -> None:
    """``TypeError`` naming the first leaf of ``tree`` that is not an array or a number."""
    for path, leaf in zip(leaf_paths(tree), jax.tree.leaves(tree), strict=True):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic | float | int):
            raise TypeError(f"{name}: expected arrays, got {type(leaf).__name__} {leaf!r:.40} "
                            f"at {path}")


def _fresh_state(params, model_state, optimizer: optax.GradientTransformation) -> tuple:
    """Copies of ``params`` and ``model_state``, and ``optimizer.init(params)``.

    Copies, because the jitted steps donate the state's buffers and the
    caller's own arrays must stay usable afterwards. One compiled program:
    run op by op, the copies and the optimizer's zeros compiled a tiny
    program per leaf shape and op (15 for the MNIST MLP with Adam, 0.27 s of
    a 2-core CPU's start-up; 0.09 s so).
    """
    def fresh(params, model_state):
        copy = functools.partial(jax.tree.map, lambda a: jnp.array(a, copy=True))
        return copy(params), copy(model_state), optimizer.init(params)

    return jax.jit(fresh)(params, model_state)
