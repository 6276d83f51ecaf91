"""``requires_grad``, PyTorch's freezing switch, refused loudly: jaxnet freezes in the optimizer.

Every spelling of it fails naming ``jaxnet.optim.freeze``, wherever the learner writes it:

* ``model.fc1.weight.requires_grad = False``: a jaxnet layer's ``weight`` is a copy (a
  JAX array, which accepts any attribute), so it would change nothing. ``Linear``
  records the last ``weight`` array it handed out; ``check(model)`` (run by
  ``nn.split``, ``nn.state_dict``, ``train.fit`` and ``train.make_train_step``, so
  also when it is set after ``nn.split``) raises if one of them was given one.
* ``layer.kernel.requires_grad = False`` (or ``bias``, ``requires_grad_()``, reading
  it, ``set_metadata(requires_grad=...)``): ``Linear``'s parameters are ``Param``, an
  ``nnx.Param`` that refuses the name at once (Flax's own message would advise
  ``set_metadata``, which freezes nothing).
* ``set_metadata(requires_grad=...)`` on any other ``nnx.Param`` (a ``BatchNorm1d``
  weight, the learner's own): ``check(model, metadata=True)`` (``fit``,
  ``make_train_step``) finds it by its path.
"""

from __future__ import annotations

import weakref
from typing import Any

from flax import nnx

from .. import _torchnames

FIX = ("jaxnet has no requires_grad: freeze in the optimizer instead, "
       "optimizer = jaxnet.optim.freeze(optax.adam(1e-3), params, frozen=\"fc1\") "
       "(params from nn.split(model))")

# layer -> the last ``weight`` array it returned (kept alive: a one-statement
# ``model.fc1.weight.requires_grad = False`` drops its array right away).
_HANDED_OUT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def refuse(name: str) -> TypeError:
    """The one error for every ``requires_grad`` spelling, naming ``jaxnet.optim.freeze``."""
    return TypeError(f"{name}: {FIX}")


class Param(nnx.Param):
    """An ``nnx.Param`` that refuses ``requires_grad`` naming ``jaxnet.optim.freeze``.

    Otherwise an ``nnx.Param`` (the same value, metadata, filters and ``repr``);
    ``Linear`` keeps its ``kernel`` and ``bias`` in one.

    >>> import jax.numpy as jnp
    >>> p = Param.named(nnx.Param(jnp.ones(2)), "kernel")
    >>> isinstance(p, nnx.Param), p[...].tolist()
    (True, [1.0, 1.0])
    >>> p.requires_grad = False
    Traceback (most recent call last):
    ...
    TypeError: kernel.requires_grad: jaxnet has no requires_grad: freeze in the optimizer ...
    """

    __slots__ = ("_jaxnet_name", "_jaxnet_stale")

    @classmethod
    def named(cls, param: nnx.Param, name: str) -> Param:
        """``param``'s value and metadata in a ``Param`` that calls itself ``name``."""
        new = cls(param.get_value(), **param.get_metadata())
        object.__setattr__(new, "_jaxnet_name", name)
        return new

    # ``layer.kernel[...]`` on a model whose TrainState trained elsewhere: the same
    # StaleModelError as ``layer.weight`` and ``model(x)``. One int test while no model is
    # stale (inside jit this runs at tracing only; merged copies are never marked).
    def __getitem__(self, key):
        if _stale_count[0]:
            _check_fresh(self, "[...]")
        return super().__getitem__(key)

    def __jax_array__(self):
        if _stale_count[0]:
            _check_fresh(self, "")
        return super().__jax_array__()

    def _name(self, attr: str) -> str:
        try:
            name = object.__getattribute__(self, "_jaxnet_name")
        except AttributeError:  # a copy Flax made (merge, unflatten): no name kept
            name = type(self).__name__
        return f"{name}.{attr}"

    def __setattr__(self, name: str, value: Any):
        if name == "requires_grad":
            raise refuse(self._name(name))
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name == "requires_grad":  # an AttributeError, so hasattr() stays False
            raise AttributeError(f"{self._name(name)}: {FIX}")
        return super().__getattr__(name)

    def requires_grad_(self, requires_grad: bool = True):
        """PyTorch's in-place freeze: refused, naming ``jaxnet.optim.freeze``."""
        raise refuse(self._name("requires_grad_()"))

    def set_metadata(self, *args, **kwargs) -> None:
        names = set(kwargs)
        if args and isinstance(args[0], dict):
            names |= set(args[0])
        elif args:
            names.add(args[0])
        if "requires_grad" in names:
            raise refuse(self._name("requires_grad"))
        super().set_metadata(*args, **kwargs)


_stale_count = [0]  # Params marked stale now (``mark_stale``): 0 makes reads free


def _check_fresh(param: Param, how: str) -> None:
    try:
        stale = object.__getattribute__(param, "_jaxnet_stale")
    except AttributeError:  # a copy Flax made (merge, clone): never marked
        return
    if stale:
        from ._functional import stale_error

        raise stale_error(param._name("")[:-1] + how)


def mark_stale(model: Any, stale: bool) -> None:
    """Mark (or unmark) each jaxnet ``Param`` of ``model`` as behind its TrainState."""
    for _, node in nnx.iter_graph(model):
        if isinstance(node, Param):
            try:
                was = object.__getattribute__(node, "_jaxnet_stale")
            except AttributeError:
                was = False
            if was != stale:
                object.__setattr__(node, "_jaxnet_stale", stale)
                _stale_count[0] += 1 if stale else -1


def handed_out(layer: Any, array: Any) -> Any:
    """Remember ``array`` as ``layer``'s last ``weight`` and return it."""
    if hasattr(array, "__dict__"):  # a concrete jax.Array (tracers are not kept)
        _HANDED_OUT[layer] = array
    return array


def _torch_names(model: Any):
    """``path -> PyTorch's dotted name`` (``layers.0``, not NNX's ``layers.layers.0``)."""
    hidden = _torchnames.sequential_lists(dict(nnx.iter_modules(model)))
    return lambda path: _torchnames.torch_name(tuple(path), hidden)


def check(model: Any, *, metadata: bool = False) -> None:
    """``TypeError`` naming the freeze if ``model`` was told ``requires_grad`` anywhere.

    Args:
      model: an ``nn.Module``.
      metadata: also look for ``requires_grad`` in every ``nnx.Param``'s metadata
        (one walk of the graph, ~0.5 ms for the MNIST MLP on a 2-core AMD EPYC:
        ``fit`` and ``make_train_step`` pay it once, ``nn.split`` does not).
    """
    if _HANDED_OUT:
        for path, module in nnx.iter_modules(model):
            if type(module).__hash__ is None:  # containers (nnx.List) hold no weight of their own
                continue
            array = _HANDED_OUT.get(module)
            if array is not None and "requires_grad" in vars(array):
                where = _torch_names(model)(path)
                raise refuse(f"{where + '.' if where else ''}weight.requires_grad")
    if metadata:
        for path, node in nnx.iter_graph(model):
            if isinstance(node, nnx.Variable) and "requires_grad" in node.get_metadata():
                raise refuse(f"{_torch_names(model)(path)}.requires_grad")
