"""The pure view of a model: ``functional`` (apply, params, state), state dicts, parameter counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class Functional(NamedTuple):
    """What ``split(model)`` returns: unpack as ``apply, params, state = ...``.

    >>> from jaxnet.nn import Linear, Rngs
    >>> f = split(Linear(2, 1, rngs=Rngs(0)))
    >>> f.apply(f.params, f.state, jnp.ones((3, 2)))[0].shape, sorted(f.params), f.state
    ((3, 1), ['bias', 'kernel'], {})
    """

    apply: Callable[..., tuple[Any, Any]]
    """``apply(params, state, x, *, train=False, rng=None) -> (outputs, new_state)``."""
    params: dict
    """Trainable parameters, a nested dict of arrays (what ``jax.grad`` and optax see)."""
    state: dict
    """Non-parameter state (BatchNorm running statistics); ``{}`` for most models."""


_RNG = nnx.RngState
_STATE = nnx.Not(nnx.Any(nnx.Param, nnx.RngState))


def _set_mode(model: nnx.Module, train: bool, rng) -> None:
    """``model.train()`` / ``model.eval()`` on a merged copy, and a key per dropout layer."""
    model.set_attributes(deterministic=not train, use_running_average=not train,
                         raise_if_not_found=False)
    if not train:
        return
    for i, (_, module) in enumerate(nnx.iter_modules(model)):
        if isinstance(module, nnx.Dropout) and module.rate > 0:
            if rng is None:
                raise ValueError("rng: the model has Dropout, so apply(..., train=True) needs "
                                 "rng=a jax.random key (the train step passes one per step)")
            module.rngs = nnx.Rngs(dropout=jax.random.fold_in(rng, i)).dropout


def _split(model: nnx.Module):
    """``(merge, params, state)``: ``merge(params, state)`` rebuilds a fresh copy of ``model``."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected an nn.Module (Flax NNX), got {type(model).__name__}")
    if not any("__call__" in vars(cls) for cls in type(model).__mro__[:-1]):
        extra = " (rename forward to __call__)" if hasattr(model, "forward") else ""
        raise TypeError(f"model: {type(model).__name__} defines no __call__(self, x), the "
                        f"method that computes the output (PyTorch's forward){extra}")
    graphdef, params, rng_state, state = nnx.split(model, nnx.Param, _RNG, ...)

    def merge(params, state):
        return nnx.merge(graphdef, params, rng_state, state)

    return merge, nnx.to_pure_dict(params), nnx.to_pure_dict(state)


def split(model: nnx.Module) -> Functional:
    """Split a model into a pure function, its parameters and its non-parameter state.

    ``apply(params, state, x, *, train=False, rng=None)`` rebuilds the model
    from its arguments inside the function, so it can be jitted and
    differentiated. ``train=True`` is PyTorch's ``model.train()`` (Dropout
    active with keys derived from ``rng``; BatchNorm uses batch statistics and
    returns updated running statistics); ``train=False`` is ``model.eval()``.
    It returns ``(outputs, new_state)``; ``new_state is state`` in
    evaluation. The model object itself is not changed.

    Args:
      model: an ``nn.Module`` (Flax NNX module) that defines ``__call__``.

    Returns:
      ``Functional(apply, params, state)``: ``params`` and ``state`` are plain
      nested dicts of arrays (together, PyTorch's ``state_dict``).

    >>> from jaxnet.nn import MLP
    >>> apply, params, state = split(MLP(2, [3], 1, rngs=0))
    >>> sorted(params["layers"]), state
    ([0, 2], {})
    >>> apply(params, state, jnp.ones((4, 2)))[0].shape
    (4, 1)
    """
    merge, params, state = _split(model)

    def apply(params, state, x, *, train: bool = False, rng=None):
        module = merge(params, state)
        _set_mode(module, train, rng)
        out = module(x)
        if not train:
            return out, state
        return out, nnx.to_pure_dict(nnx.state(module, _STATE))

    return Functional(apply, params, state)


functional = split  # the old name, kept while callers move to split (temporary alias)


def state_dict(model: nnx.Module) -> dict:
    """Parameters and buffers (BatchNorm statistics) as one nested dict (``model.state_dict()``).

    Args:
      model: an ``nn.Module``.

    Returns:
      A nested dict (sub-module names, then list indices for ``Sequential``)
      of arrays; the model's RNG state is left out.

    >>> from jaxnet.nn import BatchNorm1d, Linear, Rngs, Sequential
    >>> sorted(state_dict(Sequential(Linear(2, 2, rngs=Rngs(0)), BatchNorm1d(2)))["layers"][1])
    ['bias', 'running_mean', 'running_var', 'weight']
    """
    return nnx.to_pure_dict(nnx.state(model, nnx.Not(_RNG)))


def load_state_dict(model: nnx.Module, values: dict) -> None:
    """Copy ``values`` (from ``state_dict``) into ``model`` in place (``load_state_dict``).

    Args:
      model: the ``nn.Module`` to update.
      values: a nested dict of arrays with exactly the structure and shapes of
        ``state_dict(model)``.

    Returns:
      ``None``; ``model`` holds the new values.

    Raises:
      ValueError: naming the missing/unexpected paths, or the first path
        whose shape differs, with both shapes.

    >>> from jaxnet.nn import Linear, Rngs
    >>> a, b = Linear(2, 1, rngs=Rngs(0)), Linear(2, 1, rngs=Rngs(1))
    >>> load_state_dict(b, state_dict(a))
    >>> bool(jnp.array_equal(a.kernel[...], b.kernel[...]))
    True
    """
    current = nnx.state(model, nnx.Not(_RNG))
    want = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(current))[0]
    got_leaves, _ = jax.tree_util.tree_flatten_with_path(values)
    want_paths = [jax.tree_util.keystr(p) for p, _ in want]
    got_paths = [jax.tree_util.keystr(p) for p, _ in got_leaves]
    if want_paths != got_paths:
        missing = sorted(set(want_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(want_paths))
        raise ValueError(f"state_dict: structure differs from the model's; missing {missing}, "
                         f"unexpected {extra}")
    for (path, w), (_, g) in zip(want, got_leaves, strict=True):
        if jnp.shape(w) != jnp.shape(g):
            raise ValueError(f"state_dict{jax.tree_util.keystr(path)}: expected shape "
                             f"{jnp.shape(w)}, got {jnp.shape(g)}")
    nnx.replace_by_pure_dict(current, values)
    nnx.update(model, current)


def count_params(model_or_params: Any) -> int:
    """Number of trainable parameters of a module, or of a params pytree.

    Args:
      model_or_params: an ``nn.Module`` (its ``nnx.Param`` leaves are counted)
        or any pytree of arrays, e.g. ``params`` from ``functional``.

    Returns:
      The total number of elements, a Python ``int``.

    >>> count_params({"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)})
    8
    >>> from jaxnet.nn import MLP
    >>> count_params(MLP(50, [30, 20], 3, rngs=123))
    2213
    """
    tree = model_or_params
    if isinstance(tree, nnx.Module):
        tree = nnx.state(tree, nnx.Param)
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))
