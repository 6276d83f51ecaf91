"""``requires_grad``, PyTorch's freezing switch, refused loudly: jaxnet freezes in the optimizer.

A jaxnet layer's ``weight`` is a copy (a JAX array, which accepts any attribute), so
``model.fc1.weight.requires_grad = False`` would change nothing. ``Linear`` records the
last ``weight`` array it handed out; ``check(model)`` (run by ``nn.split`` and
``nn.state_dict``) raises if one of them was given a ``requires_grad``.
"""

from __future__ import annotations

import weakref
from typing import Any

from flax import nnx

FIX = ("jaxnet has no requires_grad: freeze in the optimizer instead, "
       "optimizer = jaxnet.optim.freeze(optax.adam(1e-3), params, frozen=\"fc1\") "
       "(params from nn.split(model))")

# layer -> the last ``weight`` array it returned (kept alive: a one-statement
# ``model.fc1.weight.requires_grad = False`` drops its array right away).
_HANDED_OUT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def refuse(name: str) -> TypeError:
    """The one error for every ``requires_grad`` spelling, naming ``jaxnet.optim.freeze``."""
    return TypeError(f"{name}: {FIX}")


def handed_out(layer: Any, array: Any) -> Any:
    """Remember ``array`` as ``layer``'s last ``weight`` and return it."""
    if hasattr(array, "__dict__"):  # a concrete jax.Array (tracers are not kept)
        _HANDED_OUT[layer] = array
    return array


def check(model: Any) -> None:
    """``TypeError`` naming the freeze if a ``weight`` of ``model`` was set ``requires_grad``."""
    if not _HANDED_OUT:
        return
    for path, module in nnx.iter_modules(model):
        if type(module).__hash__ is None:  # containers (nnx.List) hold no weight of their own
            continue
        array = _HANDED_OUT.get(module)
        if array is not None and "requires_grad" in vars(array):
            where = ".".join(str(p) for p in path)
            raise refuse(f"{where + '.' if where else ''}weight.requires_grad")
