"""PyTorch's ``nn.Module`` methods on a jaxnet model: each works the jaxnet way or names it.

``state_dict``/``load_state_dict`` work (``nn.state_dict``/``nn.load_state_dict``);
``train()``/``eval()`` are NNX's (they set the mode of a model called directly; training
through ``nn.split`` takes the mode as ``apply(…, train=)``). The rest have no meaning
for a model whose arrays are pure values, so they raise one line with the jaxnet way.
"""

from __future__ import annotations

from typing import Any

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

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "requires_grad":
            raise refuse("requires_grad")
        super().__setattr__(name, value)
