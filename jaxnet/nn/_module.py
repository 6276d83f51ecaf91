"""``Module`` (PyTorch's ``nn.Module``), its PyTorch-style ``print``, and ``Rngs`` handling."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from .._torchnames import children
from ._functional import check_fresh
from ._habits import TorchHabits


def _torch_repr(module: Any) -> str:
    """``print(model)`` as PyTorch prints it: nested ``(name): Layer(...)`` lines."""
    if not isinstance(module, nnx.Module):
        return getattr(module, "__name__", type(module).__name__)
    if isinstance(module, _Described):
        return module.describe()
    named = children(module)
    if not named:
        return f"{type(module).__name__}()"
    lines = [f"{type(module).__name__}("]
    for name, child in named:
        lines.append(f"  ({name}): " + _torch_repr(child).replace("\n", "\n  "))
    return "\n".join([*lines, ")"])


class Module(TorchHabits, nnx.Module):
    """Base class of models and layers (``torch.nn.Module``): a Flax NNX ``nnx.Module``.

    Subclass it, create layers in ``__init__(…, rngs)`` and compute in
    ``forward`` (``model(x)`` calls it, as in PyTorch) or in ``__call__``.
    ``print(model)`` shows the nested layers the way PyTorch does. PyTorch's
    ``state_dict()``/``load_state_dict()`` work; ``parameters()``, ``to()``,
    ``zero_grad()`` and ``requires_grad`` raise naming the jaxnet way.

    >>> import jax, jax.numpy as jnp
    >>> from jaxnet.nn import Linear
    >>> class TwoLayer(Module):
    ...     def __init__(self, *, rngs):
    ...         self.hidden = Linear(2, 3, rngs=rngs)
    ...         self.out = Linear(3, 1, rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.out(jax.nn.relu(self.hidden(x)))
    >>> model = TwoLayer(rngs=Rngs(0))
    >>> print(model)
    TwoLayer(
      (hidden): Linear(in_features=2, out_features=3, bias=True)
      (out): Linear(in_features=3, out_features=1, bias=True)
    )
    >>> model(jnp.ones((4, 2))).shape
    (4, 1)
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls) and not _defines_call(cls):
            cls.__call__ = _call_forward  # PyTorch's nn.Module.__call__ calls forward
        call = vars(cls).get("__call__")
        if call is not None and not hasattr(call, "__wrapped__"):
            cls.__call__ = _fresh_only(call)

    def __repr__(self) -> str:
        return _torch_repr(self)

    __str__ = __repr__


def _defines_call(cls: type) -> bool:
    return any("__call__" in vars(c) for c in cls.__mro__ if c not in (object, nnx.Module))


def _call_forward(self, *args, **kwargs):
    """``model(x)`` calls ``forward``, as PyTorch's ``nn.Module.__call__`` does."""
    return self.forward(*args, **kwargs)


def _fresh_only(call):
    """``model(x)`` raises ``StaleModelError`` while a TrainState trained without the model."""

    @functools.wraps(call)
    def checked(self, *args, **kwargs):
        check_fresh(self)
        return call(self, *args, **kwargs)

    return checked


class _Described(Module):
    """A layer that prints as one line, e.g. ``Linear(in_features=2, out_features=3)``."""

    def describe(self) -> str:
        return f"{type(self).__name__}()"

    def __repr__(self) -> str:
        return self.describe()

    __str__ = __repr__


def _rng_value(name: str, value: Any) -> Any:
    """An int seed (a numpy int becomes an int) or a key as it is; anything else refused."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        if not -(2**63) <= value < 2**63:  # what jax.random.key takes
            raise ValueError(f"nn.Rngs: {name}: expected an int seed in [-2**63, 2**63), got "
                             f"{value}")
        return int(value)
    if isinstance(value, jax.Array | nnx.RngStream) or value is None:
        return value
    raise TypeError(f"nn.Rngs: {name}: expected an int seed or a jax.random key, got "
                    f"{type(value).__name__} {value!r}; write nn.Rngs(0)")


class Rngs(nnx.Rngs):
    """``nnx.Rngs``: the explicit source of initial random values, e.g. ``nn.Rngs(0)``.

    Exactly Flax's ``nnx.Rngs`` (the same keys, accepted wherever it is), with
    jaxnet's message for a seed that is not one (``nn.Rngs(0.5)``).

    Args:
      default: an int seed or a ``jax.random`` key (or a dict of named streams).
      **rngs: named streams, e.g. ``params=0, dropout=1``.

    >>> Rngs(0).params().shape
    ()
    >>> Rngs(0.5)
    Traceback (most recent call last):
    ...
    TypeError: nn.Rngs: seed: expected an int seed or a jax.random key, got float 0.5; \
write nn.Rngs(0)
    """

    def __init__(self, default=None, **rngs):
        if isinstance(default, Mapping):
            default = {k: _rng_value(str(k), v) for k, v in default.items()}
        else:
            default = _rng_value("seed", default)
        super().__init__(default, **{k: _rng_value(k, v) for k, v in rngs.items()})


def _require_rngs(rngs: Any, layer: str) -> nnx.Rngs:
    """Layers take an ``Rngs`` shared by the model, never a bare seed (which two layers
    would then share)."""
    if isinstance(rngs, nnx.Rngs):
        return rngs
    if rngs is None:
        raise TypeError(f"{layer}: rngs is required: pass rngs=nn.Rngs(0) (one Rngs shared by "
                        f"all layers of a model, so each layer draws its own key)")
    raise TypeError(f"{layer}: rngs: expected an nn.Rngs such as nn.Rngs(0), shared by all "
                    f"layers of a model, got {type(rngs).__name__} {rngs!r}")


def _model_rngs(rngs: Any) -> nnx.Rngs:
    """A whole model (``MLP``) may take an int seed: it makes one ``Rngs`` for all layers."""
    if isinstance(rngs, int | np.integer) and not isinstance(rngs, bool):
        return nnx.Rngs(int(rngs))
    return _require_rngs(rngs, "MLP")
