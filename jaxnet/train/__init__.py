"""Training as pure, jitted functions: the PyTorch training loop, the JAX way.

The pieces, from small to large, each usable on its own:

* ``TrainState`` — a pytree ``(step, params, opt_state, rng, model_state)``;
  nothing else is mutated anywhere.
* ``make_train_step(apply, loss_fn, optimizer)`` — one jitted
  ``(state, batch) -> (state, metrics)``: the model in training mode with a
  fresh key, ``jax.value_and_grad``, the optax update. It replaces
  ``model.train(); zero_grad(); loss.backward(); step()``.
* ``make_epoch(...)`` — a whole epoch over device-resident arrays as one
  jitted ``lax.scan`` (the fast path).
* ``make_epoch_runner(..., loader)`` — one epoch of any ``DataLoader``: the
  scan for array datasets, a Python loop over the jitted step otherwise.
* ``evaluate(...)`` — loss and accuracy in evaluation mode, without
  gradients (``model.eval()`` + ``torch.no_grad()``).
* ``fit(...)`` — a short loop: resume, run an epoch, validate, callbacks.

Contract: pure functions of ``(state, batch)``; nothing mutated but the
donated state. Same seed and data → bit-identical parameters. ``train``
imports ``callbacks``, ``checkpoint``, ``parallel``, ``data``; nothing below it
imports ``train`` (callbacks get their capabilities through ``callbacks.Run``).

Many devices: ``make_epoch_runner``, ``evaluate`` and ``fit`` take
``mesh=parallel.make_mesh()``; they place the state replicated and the
batches sharded over it, and the same jitted functions compile for that
(``jaxnet.parallel``).

``apply(params, model_state, x, *, train, rng) -> (outputs, model_state)`` is
the pure model function from ``nn.split``. ``loss_fn(outputs, labels, *,
mask)`` is any ``jaxnet.losses`` function (or one with that signature) using
``reduction="mean"``; ``mask`` is False on the padding of the last batch, so
padded rows never count.

>>> import jax.numpy as jnp
>>> import optax
>>> from jaxnet import nn, losses
>>> apply, params, model_state = nn.split(nn.MLP(2, [8], 2, rngs=0))
>>> optimizer = optax.sgd(0.1)
>>> state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
>>> step = make_train_step(apply, losses.cross_entropy, optimizer)
>>> state, metrics = step(state, (jnp.ones((4, 2)), jnp.array([0, 1, 0, 1])))
>>> int(state.step), metrics["loss"].shape
(1, ())
"""

# For developers, where things live:
# Files: ``_state`` (``TrainState`` and its creation) · ``_step`` (the grad
# step, ``make_train_step``, the NaN/Inf flags and replay) · ``_batches`` (the
# one source of padded batches: arrays → device-resident scan, any loader →
# host loop, each with or without a mesh; data → ``DataLoader``) · ``_epoch``
# (``make_epoch``, ``make_epoch_runner``) · ``_evaluate`` (``evaluate``) ·
# ``_fit`` (``fit``, ``FitOptions``; the resume protocol is ``checkpoint._runs``).

from ..callbacks import NonFiniteError as NonFiniteError
from ..nn._functional import ConsumedStateError as ConsumedStateError
from ._epoch import make_epoch as make_epoch
from ._epoch import make_epoch_runner as make_epoch_runner
from ._evaluate import evaluate as evaluate
from ._fit import fit as fit
from ._state import TrainState as TrainState
from ._step import make_train_step as make_train_step

__all__ = [
    "ConsumedStateError",
    "NonFiniteError",
    "TrainState",
    "evaluate",
    "fit",
    "make_epoch",
    "make_epoch_runner",
    "make_train_step",
]


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)
