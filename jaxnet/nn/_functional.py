"""The pure view of a model: ``split`` (apply, params, state), ``update``, state dicts, counts.

The model object and the pure state are kept honest with each other: ``apply``
remembers (weakly) the model it came from, so ``fit`` can write the trained
values back, and a model whose ``TrainState`` trained elsewhere is marked stale
until ``update`` puts the trained values in (``StaleModelError`` otherwise).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import _requires_grad


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


class StaleModelError(RuntimeError):
    """A model object used after a ``TrainState`` split from it trained without it.

    >>> issubclass(StaleModelError, RuntimeError)
    True
    """


class ConsumedStateError(RuntimeError):
    """A ``TrainState`` (or its arrays) used after a jitted step consumed (donated) it.

    >>> issubclass(ConsumedStateError, RuntimeError)
    True
    """


# The models whose TrainState trained without them (each module of the model is listed, so
# ``model.fc1(x)`` is caught too). Kept here, not as an attribute of the module: an attribute
# of an NNX module is part of its graph (it would enter the graphdef, every later split and
# every jit cache key). A WeakSet keeps no model alive; nnx modules hash by identity.
_STALE: weakref.WeakSet = weakref.WeakSet()


def mark_stale(model: Any) -> None:
    """Record that a state split from ``model`` trained: the model object is now behind.

    Its modules (``model(x)``, ``model.fc1(x)``, ``.weight``) and its ``Linear``/
    ``BatchNorm1d`` parameters (``model.fc1.kernel[...]``) then raise ``StaleModelError``.
    """
    if model is not None and not _is_stale(model):
        for _, module in nnx.iter_modules(model):
            if type(module).__hash__ is not None:  # nnx.List is a container, never called
                _STALE.add(module)
        _requires_grad.mark_stale(model, True)


def _is_stale(model: Any) -> bool:
    return bool(_STALE) and type(model).__hash__ is not None and model in _STALE


def _clear_stale(model: nnx.Module) -> None:
    if _STALE:
        for _, module in nnx.iter_modules(model):
            if type(module).__hash__ is not None:
                _STALE.discard(module)
    if _requires_grad._stale_count[0]:
        _requires_grad.mark_stale(model, False)


def stale_error(name: str) -> StaleModelError:
    """The one message of a model object used while its ``TrainState`` trained elsewhere."""
    return StaleModelError(
        f"{name}: expected the trained weights, got the weights from before training (a "
        f"train step or epoch from nn.split(model) trained a TrainState, not the model "
        f"object): write nn.update(model, state) first, or predict with "
        f"apply(state.params, state.model_state, x)")


def check_fresh(model: Any, name: str = "model") -> None:
    """``StaleModelError`` if ``model`` is behind the ``TrainState`` that trained from it."""
    if _is_stale(model):
        raise stale_error(name)


def check_live(tree: Any, name: str = "state", fix: str = "state, metrics = step(state, batch)"
               ) -> None:
    """``ConsumedStateError`` if an array of ``tree`` was donated to a jitted step."""
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.Array) and leaf.is_deleted():
            raise ConsumedStateError(
                f"{name}: this TrainState was consumed by a train step (its buffers were "
                f"donated): use the state the step returned (`{fix}`)")


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
        extra = (" (subclass jaxnet.nn.Module, whose model(x) calls forward, or rename "
                 "forward to __call__)" if hasattr(model, "forward") else "")
        raise TypeError(f"model: {type(model).__name__} defines no __call__(self, x), the "
                        f"method that computes the output (PyTorch's forward){extra}")
    _requires_grad.check(model)
    graphdef, params, rng_state, state = nnx.split(model, nnx.Param, _RNG, ...)

    def merge(params, state):
        return nnx.merge(graphdef, params, rng_state, state)

    check_fresh(model)
    return merge, nnx.to_pure_dict(params), nnx.to_pure_dict(state)


class Apply:
    """The pure ``apply`` of ``split(model)``; it remembers its model, weakly.

    A small callable object rather than a closure so that ``fit`` can find the
    model to write the trained values back into (``apply.model``). Hashed by
    identity, so it is a valid static argument of ``jax.jit``; it keeps the
    model alive no longer than the caller does.
    """

    __slots__ = ("_merge", "_model", "__weakref__")

    def __init__(self, merge: Callable, model: nnx.Module):
        self._merge = merge
        self._model = weakref.ref(model)

    @property
    def model(self) -> nnx.Module | None:
        """The model this ``apply`` was split from, or ``None`` once it is gone."""
        return self._model()

    def __call__(self, params, state, x, *, train: bool = False, rng=None):
        module = self._merge(params, state)
        _set_mode(module, train, rng)
        out = module(x)
        if not train:
            return out, state
        return out, nnx.to_pure_dict(nnx.state(module, _STATE))

    def __repr__(self) -> str:
        model = self.model
        return f"<apply of {'a deleted model' if model is None else type(model).__name__}>"


def split(model: nnx.Module) -> Functional:
    """Split a model into a pure function, its parameters and its non-parameter state.

    ``apply(params, state, x, *, train=False, rng=None)`` rebuilds the model
    from its arguments inside the function, so it can be jitted and
    differentiated. ``train=True`` is PyTorch's ``model.train()`` (Dropout
    active with keys derived from ``rng``; BatchNorm uses batch statistics and
    returns updated running statistics); ``train=False`` is ``model.eval()``.
    It returns ``(outputs, new_state)``; ``new_state is state`` in
    evaluation. The model object itself is not changed: ``fit`` writes the
    trained values back into it at the end; after a ``make_train_step`` loop
    write ``update(model, state)`` (until then using ``model`` raises
    ``StaleModelError``).

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
    return Functional(Apply(merge, model), params, state)


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
    check_fresh(model)
    _requires_grad.check(model)
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
    _refuse_torch_state_dict(values)
    _put(model, nnx.Not(_RNG), values, "state_dict")
    _clear_stale(model)


def _refuse_torch_state_dict(values: Any) -> None:
    """A PyTorch state dict (flat ``"fc1.weight"`` keys, torch tensors) names ``interop``."""
    if not isinstance(values, dict):
        return
    flat = any(isinstance(k, str) and "." in k for k in values)
    torch_leaf = any(type(v).__module__.startswith("torch") for v in values.values())
    if flat or torch_leaf:
        example = next(iter(values))
        raise TypeError(f"state_dict: expected jaxnet's nested state dict (nn.state_dict("
                        f"model)), got a PyTorch state dict (keys like {example!r}, PyTorch's "
                        f"layout): model = jaxnet.interop.from_torch_state_dict(sd, model)")


def _put(model: nnx.Module, which, values: Any, name: str) -> None:
    """Check ``values`` against the ``which`` part of ``model``, then copy them in, cast."""
    current = nnx.state(model, which)
    want = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(current))[0]
    # None is a leaf here, so {"bias": None} is named as unexpected, not a pytree error later
    got_leaves, _ = jax.tree_util.tree_flatten_with_path(values, is_leaf=lambda v: v is None)
    want_paths = [jax.tree_util.keystr(p) for p, _ in want]
    got_paths = [jax.tree_util.keystr(p) for p, _ in got_leaves]
    if want_paths != got_paths:
        missing = sorted(set(want_paths) - set(got_paths))
        extra = sorted(set(got_paths) - set(want_paths))
        raise ValueError(f"{name}: structure differs from the model's; missing {missing}, "
                         f"unexpected {extra}")
    for (path, w), (_, g) in zip(want, got_leaves, strict=True):
        if jnp.shape(w) != jnp.shape(g):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)}: expected shape "
                             f"{jnp.shape(w)}, got {jnp.shape(g)}")
    check_live(values, name, "state, metrics = step(state, batch)")
    # Copies, cast to the model's dtypes: the model never shares a buffer with the caller
    # (a later donating step would delete it under the model).
    copies = jax.tree.map(lambda w, g: jnp.array(g, dtype=jnp.result_type(w), copy=True),
                          nnx.to_pure_dict(current), values)
    nnx.replace_by_pure_dict(current, copies)
    nnx.update(model, current)


def update(model: nnx.Module, source: Any, *, model_state: Any = None) -> None:
    """Put trained values into ``model`` in place, BatchNorm statistics included.

    The one call that makes the model object hold what a ``TrainState``
    trained (``fit`` does it for you at its end; a ``make_train_step`` loop
    does not). The values are copied and cast to the model's dtypes.

    Args:
      model: the ``nn.Module`` that ``split`` was called on.
      source: a ``TrainState`` (its ``params`` and ``model_state``), a params
        dict (``state.params``), or a state dict (``state_dict(model)``).
      model_state: with a params dict, the non-parameter state to put in too
        (``state.model_state``); without it that state is left as it is.

    Returns:
      ``None``; ``model`` holds the new values (and is no longer stale).

    Raises:
      ValueError: naming the missing/unexpected paths, or the first path
        whose shape differs, with both shapes.

    >>> from jaxnet.nn import Linear, Rngs
    >>> model = Linear(2, 1, rngs=Rngs(0))
    >>> apply, params, _ = split(model)
    >>> trained = jax.tree.map(lambda p: p + 1.0, params)
    >>> update(model, trained)
    >>> bool(jnp.array_equal(model.kernel[...], trained["kernel"]))
    True
    """
    if hasattr(source, "params") and hasattr(source, "model_state"):  # a TrainState
        if model_state is not None:
            raise ValueError("model_state: only with a params dict; a TrainState carries its "
                             "own model_state")
        source, model_state = source.params, source.model_state
    if not isinstance(source, dict):
        raise TypeError(f"source: expected a TrainState, a params dict or a state dict, got "
                        f"{type(source).__name__}")
    params_paths = len(jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param))))
    if model_state is None and len(jax.tree.leaves(source)) != params_paths:
        _put(model, nnx.Not(_RNG), source, "source")  # a whole state dict
    else:
        _put(model, nnx.Param, source, "params")
        if model_state is not None:
            _put(model, _STATE, model_state, "model_state")
    _clear_stale(model)


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
