"""PyTorch's ``nn.Module`` methods on a jaxnet model: each works the jaxnet way or names it.

``state_dict``/``load_state_dict`` work (``nn.state_dict``/``nn.load_state_dict``);
``train()``/``eval()`` are NNX's (they set the mode of a model called directly; training
through ``nn.split`` takes the mode as ``apply(…, train=)``); ``children()``,
``modules()`` and ``named_modules()`` walk the layers with PyTorch's names. The rest have
no meaning for a model whose arrays are pure values, so they raise one line with the
jaxnet way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._torchnames import children
from ._functional import load_state_dict, state_dict
from ._requires_grad import refuse


class TorchHabits:
    """The methods a PyTorch learner calls on a model (mixed into ``nn.Module``)."""

    def parameters(self, recurse: bool = True):
        """Refused: jaxnet optimizers take the params pytree, not a list of tensors."""
        raise TypeError("model.parameters(): jaxnet optimizers take the params pytree: "
                        "apply, params, state = nn.split(model); "
                        "opt_state = optax.adam(1e-3).init(params) (or TrainState.create)")

    def named_parameters(self, *args: Any, **kwargs: Any):
        """Refused: the named parameters are the nested dict ``nn.split(model).params``."""
        raise TypeError("model.named_parameters(): the parameters by name are the nested "
                        "dict nn.split(model).params (or nn.state_dict(model))")

    def to(self, *args: Any, **kwargs: Any):
        """Refused: XLA places the arrays (``jax.device_put`` to choose)."""
        raise TypeError("model.to(device): jaxnet has nothing to move: XLA places arrays on "
                        "the default device (the GPU when there is one, jax.devices()); to "
                        "choose, jax.device_put(params, device)")

    def cuda(self, *args: Any, **kwargs: Any):
        """Refused like ``to``."""
        raise TypeError("model.cuda(): jaxnet has nothing to move: XLA places arrays on the "
                        "GPU when there is one (jax.devices()); to choose, "
                        "jax.device_put(params, device)")

    def cpu(self):
        """Refused like ``to``."""
        raise TypeError("model.cpu(): jaxnet has nothing to move; to copy arrays to the "
                        "host, np.asarray(x) or jax.device_get(params)")

    def zero_grad(self, *args: Any, **kwargs: Any):
        """Refused: gradients are return values, never accumulated in the model."""
        raise TypeError("model.zero_grad(): jaxnet keeps no gradients to zero: "
                        "jax.value_and_grad returns fresh ones each step (make_train_step, "
                        "fit); just leave the line out")

    def requires_grad_(self, requires_grad: bool = True):
        """Refused: freeze in the optimizer (``jaxnet.optim.freeze``)."""
        raise refuse("requires_grad_()")

    def state_dict(self) -> dict:
        """``nn.state_dict(model)``: parameters and buffers as one nested dict."""
        return state_dict(self)

    def load_state_dict(self, values: dict, strict: bool = True) -> None:
        """``nn.load_state_dict(model, values)``: copy ``values`` in, in place."""
        if strict is not True:
            raise TypeError("load_state_dict: strict=False is not supported: the keys must "
                            "match exactly (to load a PyTorch state dict, "
                            "jaxnet.interop.from_torch_state_dict(sd, model))")
        load_state_dict(self, values)

    def children(self) -> Iterator[Any]:
        """The direct sub-layers, in the order they were assigned (PyTorch's ``children()``)."""
        return (child for _, child in children(self))

    def named_modules(self, memo: set | None = None, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """``(name, module)`` for this model (name ``""``) and every sub-layer, depth first,
        each once, named as in the state dict (``"fc1"``, ``"layers.0"``), as in PyTorch."""
        return _named(self, set() if memo is None else memo, prefix)

    def modules(self) -> Iterator[Any]:
        """This model and every sub-layer, depth first, each once (PyTorch's ``modules()``)."""
        return (module for _, module in self.named_modules())

    def double(self):
        """Refused: a model holds no dtype to switch; cast the params pytree."""
        raise _cast_refused("double", "float64", " (float64 also needs "
                            "jax.config.update('jax_enable_x64', True) at start-up, else JAX "
                            "keeps float32)")

    def half(self):
        """Refused like ``double``."""
        raise _cast_refused("half", "float16", " (or jnp.bfloat16)")

    def float(self):
        """Refused like ``double`` (jaxnet's parameters are float32 already)."""
        raise _cast_refused("float", "float32", " (jaxnet's parameters are float32 already)")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "requires_grad":
            raise refuse("requires_grad")
        super().__setattr__(name, value)


def _named(module: Any, memo: set, path: str) -> Iterator[tuple[str, Any]]:
    if id(module) in memo:  # a layer shared by two attributes: once, as PyTorch
        return
    memo.add(id(module))
    yield path, module
    for name, child in children(module):
        yield from _named(child, memo, f"{path}.{name}" if path else name)


def _cast_refused(method: str, dtype: str, note: str) -> TypeError:
    return TypeError(f"model.{method}(): jaxnet models hold no dtype to switch; cast the params "
                     f"pytree: params = jax.tree.map(lambda a: a.astype(jnp.{dtype}), params) "
                     f"after apply, params, state = nn.split(model){note}")
