"""What a PyTorch user looks for in ``torch.optim``: freeze a layer, change the learning rate.

The optimizers themselves are optax's, used directly (``optax.adam(1e-3)``);
these functions build or edit them the way the course's habits expect:

* ``freeze(optimizer, params, frozen)`` — PyTorch's ``p.requires_grad = False``:
  an ``optax.multi_transform`` that gives the named layers (``"fc1"``,
  ``"0"``, ``"layers.0"``, ``"fc1.weight"``: the names ``print(model)`` and
  state dicts show) zero updates, so their values stay bit-identical.
* ``learning_rate(state)`` / ``set_learning_rate(state, lr)`` — PyTorch's
  ``for g in opt.param_groups: g["lr"] = lr``. The rate lives in the
  optimizer *state* when the optimizer is built with
  ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)``, so it is saved
  in every checkpoint and a resumed run continues with the rate it had.

Contract: pure functions; ``state`` is duck-typed (``.opt_state``,
``.replace``: a ``train.TrainState``), so this module does not import ``train``.

>>> import optax
>>> from jaxnet import nn
>>> _, params, _ = nn.split(nn.MLP(4, [3], 2, rngs=0))
>>> optimizer = freeze(optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), params, "0")
>>> sorted(optimizer.init(params).inner_states)
['frozen', 'trainable']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import _torchnames, nn

__all__ = ["freeze", "learning_rate", "set_learning_rate"]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)

_BUILD = "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)"


# ---------------------------------------------------------------------------- freeze

def _leaf_names(params: Any, model: nnx.Module | None) -> list[tuple[set[tuple], str]]:
    """For each leaf of ``params``, in tree order: the name part tuples it answers to
    (PyTorch's, ``weight`` for a ``Linear`` kernel, and NNX's dotted path), and
    PyTorch's name for messages."""
    hidden: set[tuple] = set()
    if model is not None:
        hidden = _torchnames.sequential_lists(dict(nnx.iter_modules(model)))
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
        seq = hidden if model is not None else _torchnames.sequential_lists_in(parts)
        torch = tuple(_torchnames.torch_name(parts, seq).split("."))
        if torch[-1] == "kernel":  # a Linear's kernel is PyTorch's (transposed) weight
            torch = (*torch[:-1], "weight")
        nnx_path = tuple(str(p) for p in parts)
        out.append(({torch, nnx_path, (*nnx_path[:-1], torch[-1])}, ".".join(torch)))
    return out


def _frozen_names(frozen: Any) -> list[str]:
    if isinstance(frozen, str):
        return [frozen]
    if isinstance(frozen, Sequence | set | frozenset) \
            and all(isinstance(f, str) for f in frozen):
        return list(frozen)
    raise TypeError(f"frozen: expected a layer name such as 'fc1' or a list of them, got "
                    f"{type(frozen).__name__} {frozen!r:.60}")


def freeze(optimizer: optax.GradientTransformation, params: Any,
           frozen: str | Sequence[str]) -> optax.GradientTransformation:
    """``optimizer`` for every parameter except the ``frozen`` layers, which never change.

    PyTorch's ``for p in model.fc1.parameters(): p.requires_grad = False``.
    The frozen parameters get ``optax.set_to_zero()`` updates (no optimizer
    state, no weight decay): they stay bit-identical to their values before
    training. Gradients are still computed for them (JAX differentiates the
    whole ``params``); BatchNorm running statistics are model state, not
    parameters, and keep updating in training mode, as in PyTorch.

    Args:
      optimizer: any optax ``GradientTransformation`` (``optax.adam(1e-3)``,
        ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)``…).
      params: the model's parameters (``nn.split(model).params``), or the
        model itself (then a ``Sequential`` is recognised by its type rather
        than by its ``layers`` level).
      frozen: a layer or parameter name, or a list of them, as ``print(model)``
        and PyTorch's state dict keys spell them: ``"fc1"``, ``"fc1.weight"``,
        ``"0"`` (an ``MLP``'s or ``Sequential``'s first layer), ``"layers.0"``
        (a ``Sequential`` stored as ``self.layers``; for a bare ``MLP`` too).

    Returns:
      An ``optax.multi_transform``: use it wherever ``optimizer`` was used
      (``TrainState.create``, ``fit``, ``make_train_step``).

    Raises:
      ValueError: a name matches no parameter; the message lists the valid ones.

    >>> import optax
    >>> from jaxnet import nn
    >>> model = nn.MLP(2, [3], 2, rngs=0)
    >>> apply, params, _ = nn.split(model)
    >>> optimizer = freeze(optax.sgd(0.1), params, "0")   # the first Linear
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, _ = optimizer.update(grads, optimizer.init(params), params)
    >>> float(abs(updates["layers"][0]["kernel"]).max()), float(updates["layers"][2]["bias"][0])
    (0.0, -0.1)
    >>> freeze(optax.sgd(0.1), params, "fc1")
    Traceback (most recent call last):
    ...
    ValueError: frozen: expected a layer or parameter of the model, got 'fc1'; it has: '0', ...
    """
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer: expected an optax GradientTransformation such as "
                        f"optax.adam(1e-3), got {type(optimizer).__name__}")
    model = params if isinstance(params, nnx.Module) else None
    if model is not None:
        params = nn.split(model).params
    names = _frozen_names(frozen)
    leaves = _leaf_names(params, model)
    if not leaves:
        raise ValueError("params: expected the model's parameters (nn.split(model).params), "
                         "got a tree without arrays")
    hit = [False] * len(leaves)
    for name in names:
        want = tuple(name.split("."))
        found = False
        for i, (spellings, _) in enumerate(leaves):
            if any(s[:len(want)] == want for s in spellings):
                hit[i] = found = True
        if not found or not name:
            raise ValueError(f"frozen: expected a layer or parameter of the model, got "
                             f"{name!r}; it has: {_valid(leaves)}")
    labels = jax.tree.unflatten(jax.tree.structure(params),
                                ["frozen" if h else "trainable" for h in hit])
    return optax.multi_transform({"trainable": optimizer, "frozen": optax.set_to_zero()},
                                 labels)


def _valid(leaves: list[tuple[set[tuple], str]]) -> str:
    """The layer names (each prefix of a parameter's name) and the parameter names."""
    layers: dict[str, None] = {}
    for _, torch in leaves:
        parts = torch.split(".")
        for n in range(1, len(parts)):
            layers.setdefault(".".join(parts[:n]))
    shown = [*layers, *(torch for _, torch in leaves)]
    more = f", … ({len(shown) - 40} more)" if len(shown) > 40 else ""
    return ", ".join(repr(s) for s in shown[:40]) + more


# ---------------------------------------------------------------------------- learning rate

_INJECTED = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def _opt_state(state: Any) -> Any:
    if not hasattr(state, "opt_state") or not hasattr(state, "replace"):
        raise TypeError(f"state: expected a TrainState (with .opt_state), got "
                        f"{type(state).__name__}")
    return state.opt_state


def _injected(opt_state: Any) -> list:
    """The ``inject_hyperparams`` states in ``opt_state`` that hold a ``learning_rate``."""
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, _INJECTED))
    found = [n for n in nodes if isinstance(n, _INJECTED) and "learning_rate" in n.hyperparams]
    if not found:
        raise ValueError(f"state: its optimizer has no learning_rate hyperparameter; build "
                         f"it with {_BUILD}")
    return found


def _as_float(value: Any) -> float:
    """A float32 rate as the short decimal it was given as (``1e-3``, not 0.0010000000474…)."""
    array = np.asarray(value)
    return float(str(array.item() if array.dtype == np.float64 else array.astype(np.float32)))


def learning_rate(state: Any) -> float:
    """The learning rate the optimizer in ``state`` uses now (``opt.param_groups[0]["lr"]``).

    Args:
      state: a ``TrainState`` whose optimizer was built with
        ``optax.inject_hyperparams``, e.g. ``optax.inject_hyperparams(optax.adam)
        (learning_rate=1e-3)`` (also inside ``freeze``, ``optax.chain``…).

    Returns:
      The rate, a Python float (with a schedule: the rate of the last step).

    Raises:
      ValueError: the optimizer keeps no learning rate in its state (built as
        ``optax.adam(1e-3)``), or keeps several different ones.

    >>> import optax
    >>> from jaxnet import nn
    >>> from jaxnet.train import TrainState
    >>> _, params, _ = nn.split(nn.Linear(2, 1, rngs=nn.Rngs(0)))
    >>> state = TrainState.create(params, optax.inject_hyperparams(optax.adam)(learning_rate=1e-3))
    >>> learning_rate(state)
    0.001
    >>> learning_rate(TrainState.create(params, optax.adam(1e-3)))
    Traceback (most recent call last):
    ...
    ValueError: state: its optimizer has no learning_rate hyperparameter; build it with \
optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    """
    rates = sorted({_as_float(n.hyperparams["learning_rate"])
                    for n in _injected(_opt_state(state))})
    if len(rates) > 1:
        raise ValueError(f"state: its optimizer holds several learning rates {rates}; "
                         f"set_learning_rate(state, lr) sets them all to one")
    return rates[0]


def set_learning_rate(state: Any, lr: float) -> Any:
    """A copy of ``state`` whose optimizer uses ``lr`` from the next step on.

    PyTorch's ``for g in optimizer.param_groups: g["lr"] = lr``. The rate is
    part of the optimizer state, so checkpoints save it and a resumed run
    continues with it. ``state`` itself is not changed: use the one returned.

    Args:
      state: a ``TrainState`` whose optimizer was built with
        ``optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)`` (any
        optax optimizer factory with a ``learning_rate`` argument works).
      lr: a finite number >= 0; every ``learning_rate`` hyperparameter in the
        optimizer state is set to it (in its dtype).

    Returns:
      A new ``TrainState`` (``state.replace(opt_state=...)``).

    Raises:
      ValueError: no ``learning_rate`` hyperparameter (the message says how to
        build one), or the rate follows a schedule (it would be overwritten at
        the next step), or ``lr`` is negative or not finite.

    >>> import optax
    >>> from jaxnet import nn
    >>> from jaxnet.train import TrainState
    >>> _, params, _ = nn.split(nn.Linear(2, 1, rngs=nn.Rngs(0)))
    >>> state = TrainState.create(params, optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
    >>> state = set_learning_rate(state, 0.01)
    >>> learning_rate(state)
    0.01
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.number | jax.Array) \
            or np.ndim(lr) != 0 or not math.isfinite(float(lr)) or float(lr) < 0:
        raise ValueError(f"lr: expected a finite number >= 0, got {lr!r:.60}")
    opt_state = _opt_state(state)
    for node in _injected(opt_state):
        if "learning_rate" in getattr(node, "hyperparams_states", {}):
            raise ValueError(f"state: its learning rate follows a schedule, which sets it "
                             f"again at every step; to set it by hand, build the optimizer "
                             f"with a number: {_BUILD}")

    def replace(node):
        if not isinstance(node, _INJECTED) or "learning_rate" not in node.hyperparams:
            return node
        old = node.hyperparams["learning_rate"]
        new = jnp.asarray(float(lr), dtype=jnp.result_type(old))
        return node._replace(hyperparams={**node.hyperparams, "learning_rate": new})

    opt_state = jax.tree.map(replace, opt_state, is_leaf=lambda x: isinstance(x, _INJECTED))
    return state.replace(opt_state=opt_state)
