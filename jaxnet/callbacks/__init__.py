"""Callbacks: what ``fit`` does around each epoch, as small objects you can add or replace.

The protocol (Keras's, smaller). Subclass ``Callback`` and override any hook;
each receives the ``Run`` (what is being trained, on what data):

* ``on_train_begin(run)`` — before the first epoch (after a resume).
* ``on_epoch_begin(run, epoch, state) -> state | None`` — ``epoch`` counts
  from 1. Return ``None`` (the state as it is) or a new state for the epoch to
  train from: ``return optim.set_learning_rate(state, 1e-4)`` is PyTorch's
  ``g["lr"] = 1e-4`` (a scheduler), saved in checkpoints and kept on resume.
  ``fit`` calls your hooks in order, each with the previous one's state, then
  the built-in ones (so ``FiniteCheck`` replays from the state the epoch used).
* ``on_batch_end(run, batch, loss)`` — once per batch, in order: ``batch``
  counts from 0 in each epoch, ``loss`` is that batch's mean loss (a 0-d
  float32 array; ``float(loss)`` for a number). A per-example ``Dataset`` calls it
  after each step; an array dataset runs each epoch as one compiled scan, so
  there ``on_batch_end`` runs after the epoch's compiled scan, once per batch,
  in order, with the same arguments and values.
* ``on_epoch_end(run, epoch, state, logs) -> bool | None`` — ``logs`` is the
  epoch's history entry (``train_loss``, ``val_loss``, ``val_accuracy``,
  timings…); return ``True`` to stop training after this epoch.
* ``on_train_end(run, state)`` — always, also when training stops with an error.

The ``state`` a hook receives is consumed by the next epoch (the train step
donates its buffers, as PyTorch updates weights in place): to keep weights
for later — the best epoch's, say — copy them, as PyTorch code uses
``copy.deepcopy(model.state_dict())``::

    self.best = jax.tree.map(jnp.copy, state.params)

``fit`` builds the usual ones from its arguments (``check_finite`` →
``FiniteCheck``, ``checkpoint_dir`` → ``Checkpoint``, ``progress`` →
``ProgressBar``, ``log`` → ``EpochLog``) and runs yours after them.

>>> class PrintLoss(Callback):
...     def on_epoch_end(self, run, epoch, state, logs):
...         print(f"epoch {epoch}: {logs['train_loss']:.3f}")
>>> stop = EarlyStopping(monitor="val_loss", patience=2)
"""

from ._checkpoint import Checkpoint as Checkpoint
from ._early_stopping import EarlyStopping as EarlyStopping
from ._finite import FiniteCheck as FiniteCheck
from ._finite import NonFiniteError as NonFiniteError
from ._output import EpochLog as EpochLog
from ._output import ProgressBar as ProgressBar
from ._protocol import Callback as Callback
from ._protocol import Run as Run

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "EpochLog",
    "FiniteCheck",
    "NonFiniteError",
    "ProgressBar",
    "Run",
]

NonFiniteError.__module__ = __name__  # `except jaxnet.callbacks.NonFiniteError` and tracebacks


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)
