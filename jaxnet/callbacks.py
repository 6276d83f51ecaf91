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

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import non_negative_int, positive_int

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


def __dir__() -> list[str]:  # dir() and tab completion show the API, not the imports
    return list(__all__)


@dataclass
class Run:
    """What ``fit`` is training: passed to every callback hook.

    Attributes:
      apply, loss_fn, optimizer: as given to ``fit``.
      loader: the training ``DataLoader``.
      epochs: the epoch ``fit`` stops after (counting from 1).
      start_epoch: epochs already done before this call (> 0 after a resume).
      history: the per-epoch entries so far (including resumed ones); ``fit``
        appends each epoch's entry to this list, the one it returns.
      config: the run's JSON-able configuration (saved with checkpoints).
      find_non_finite: ``find_non_finite(state, epoch) -> (i, names) | None``,
        set by ``fit``: replays epoch ``epoch`` from ``state`` step by step and
        names the first batch ``i`` whose loss or gradients are not finite
        (``FiniteCheck`` uses it; ``None`` outside ``fit``).

    ``fit`` builds it; a hook only reads it:

    >>> from jaxnet.data import ArrayDataset, DataLoader
    >>> loader = DataLoader(ArrayDataset(np.zeros((8, 2))), batch_size=4)
    >>> run = Run(apply=None, loss_fn=None, optimizer=None, loader=loader, epochs=3)
    >>> run.epochs, run.start_epoch, run.history, len(run.loader)
    (3, 0, [], 2)
    """

    apply: Callable
    loss_fn: Callable
    optimizer: Any
    loader: Any
    epochs: int
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    config: dict | None = None
    find_non_finite: Callable[[Any, int], tuple[int, list[str]] | None] | None = field(
        default=None, init=False, repr=False)


class Callback:
    """Base class: every hook does nothing. See the module docstring for the protocol.

    Override the hooks you need and pass an instance to ``fit(callbacks=[...])``;
    returning ``True`` from ``on_epoch_end`` stops training after that epoch.

    >>> import optax
    >>> from jaxnet import losses, nn
    >>> from jaxnet.train import TrainState, fit
    >>> class StopAfterOne(Callback):
    ...     def on_epoch_end(self, run, epoch, state, logs):
    ...         print(f"epoch {epoch}/{run.epochs}", "train_loss" in logs)
    ...         return True
    >>> apply, params, model_state = nn.split(nn.Linear(2, 2, rngs=nn.Rngs(0)))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> state, history = fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data,
    ...                      epochs=5, batch_size=4, callbacks=[StopAfterOne()],
    ...                      progress=False, log=None)
    epoch 1/5 True
    >>> len(history)
    1
    """

    def on_train_begin(self, run: Run) -> None:
        pass

    def on_epoch_begin(self, run: Run, epoch: int, state) -> Any:
        return None  # or a new state for the epoch: state.replace(...), set_learning_rate

    def on_batch_end(self, run: Run, batch: int, loss: jax.Array) -> None:
        pass

    def on_epoch_end(self, run: Run, epoch: int, state, logs: dict) -> bool | None:
        return None

    def on_train_end(self, run: Run, state) -> None:
        pass


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or Inf; ``epoch``, ``step`` and ``names`` say where."""

    def __init__(self, epoch: int, step: int, names: list[str]):
        self.epoch, self.step, self.names = epoch, step, names
        super().__init__(f"non-finite values at epoch {epoch}, step {step} of that epoch: "
                         f"{', '.join(names)}; the last checkpoint (if any) is kept"
                         + ("; a NaN loss may also mean labels outside [0, C) (the losses "
                            "make them NaN under jit)" if "loss" in names else ""))


class FiniteCheck(Callback):
    """Stop with ``NonFiniteError`` naming the epoch, step and value of a NaN/Inf.

    It covers all that a checkpoint saves: parameters, model state (BatchNorm
    statistics) and optimizer state, named as you index them
    (``model_state['layers'][1]['running_var']``). The hot path pays little:
    the epoch's mean loss and, once per epoch, the state are checked. Only
    when a check fails is the epoch replayed from a copy of its starting state,
    checked every step, to name the first culprit. Put it before ``Checkpoint``
    so that a poisoned state is never saved (``fit`` does). A run continued
    from a state holding NaN/Inf is refused before its first epoch.

    ``fit(check_finite=True)`` (the default) adds one; here it is passed by hand:

    >>> import optax
    >>> from jaxnet import losses, nn
    >>> from jaxnet.train import TrainState, fit
    >>> apply, params, model_state = nn.split(nn.Linear(2, 2, rngs=nn.Rngs(0)))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> data = (np.full((8, 2), np.nan, np.float32), np.zeros(8, np.int32))
    >>> fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data, epochs=1,
    ...     batch_size=4, check_finite=False, callbacks=[FiniteCheck()],
    ...     progress=False, log=None)
    Traceback (most recent call last):
    ...
    jaxnet.callbacks.NonFiniteError: non-finite values at epoch 1, step 0 of that epoch: ...
    """

    def __init__(self):
        self._start = None

    def on_epoch_begin(self, run, epoch, state):
        from .checkpoint._finite import all_finite, non_finite_paths, refusal

        if run.start_epoch > 0 and epoch == run.start_epoch + 1 and not all_finite(state):
            error = NonFiniteError(epoch, 0, non_finite_paths(state))  # e.g. a NaN checkpoint
            error.args = (refusal(f"state: the state epoch {epoch} would continue from (the "
                                  f"checkpoint step_{epoch - 1:08d} of a resumed run, or a "
                                  f"state trained before)", error.names),)
            raise error
        # The train step donates (consumes) the state: keep a copy to replay from.
        self._start = jax.tree.map(jnp.copy, state)

    def on_epoch_end(self, run, epoch, state, logs):
        from .checkpoint._finite import all_finite, non_finite_paths

        if math.isfinite(logs["train_loss"]) and all_finite(state):
            return None
        found = None if run.find_non_finite is None else run.find_non_finite(self._start, epoch)
        if found is not None:
            raise NonFiniteError(epoch, *found)
        names = non_finite_paths(state) or ["loss"]
        raise NonFiniteError(epoch, len(run.loader) - 1, [f"{n} after the epoch" for n in names])


class Checkpoint(Callback):
    """Save the full ``TrainState`` after every epoch (``torch.save`` of everything).

    Each checkpoint also holds the epoch, the history and ``run.config``, so
    ``fit(..., resume=True)`` continues exactly. Keeps the newest ``keep``.

    Args:
      directory: folder of the checkpoints (``str`` or ``Path``), one per epoch
        numbered by the epoch.
      keep: how many of the newest checkpoints to keep, > 0.

    ``fit(checkpoint_dir=...)`` adds one (and locks the folder); here it is
    passed by hand:

    >>> import tempfile
    >>> import optax
    >>> from jaxnet import checkpoint, losses, nn
    >>> from jaxnet.train import TrainState, fit
    >>> apply, params, model_state = nn.split(nn.Linear(2, 2, rngs=nn.Rngs(0)))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> folder = tempfile.mkdtemp()
    >>> _ = fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data, epochs=2,
    ...         batch_size=4, callbacks=[Checkpoint(folder, keep=1)], progress=False,
    ...         log=None)
    >>> checkpoint.all_steps(folder)
    [2]
    """

    def __init__(self, directory, *, keep: int = 3):
        self.directory = directory
        self.keep = positive_int("keep", keep)

    def on_epoch_end(self, run, epoch, state, logs):
        from . import checkpoint
        from .checkpoint._runs import epoch_metadata

        checkpoint.save(self.directory, state, step=epoch, keep=self.keep,
                        metadata=epoch_metadata(epoch, run.history, run.config or {}))


def _write_line(log: Callable[[str], Any], line: str) -> None:
    """Print above any tqdm bar instead of through it."""
    tqdm_module = sys.modules.get("tqdm.auto") or sys.modules.get("tqdm")
    if tqdm_module is None:
        log(line)
        return
    with tqdm_module.tqdm.external_write_mode():
        log(line)


def format_epoch(logs: dict, epochs: int) -> str:
    """``epoch 2/5  train_loss 0.1234  val_loss …  val_accuracy …  1.23s``."""
    parts = [f"epoch {logs['epoch']}/{epochs}", f"train_loss {logs['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in logs.items()
              if k.startswith("val_") and isinstance(v, float)]
    parts.append(f"{logs['seconds']:.2f}s")
    return "  ".join(parts)


class EpochLog(Callback):
    """One line per epoch: losses, validation metrics and time, through ``log``.

    Args:
      log: called with each line (a ``str``); default ``print``.

    >>> run = Run(apply=None, loss_fn=None, optimizer=None, loader=None, epochs=5)
    >>> logs = {"epoch": 2, "train_loss": 0.25, "val_loss": 0.5, "val_accuracy": 0.875,
    ...         "seconds": 1.5}
    >>> EpochLog().on_epoch_end(run, 2, None, logs)
    epoch 2/5  train_loss 0.2500  val_loss 0.5000  val_accuracy 0.8750  1.50s
    """

    def __init__(self, log: Callable[[str], Any] = print):
        self.log = log

    def on_epoch_end(self, run, epoch, state, logs):
        _write_line(self.log, format_epoch(logs, run.epochs))


class ProgressBar(Callback):
    """A tqdm bar: per epoch for array datasets, per batch for per-example datasets.

    Array datasets run one compiled scan per epoch, so the bar advances once
    per epoch; per-example datasets advance it every batch and show the
    running loss. The bar draws on stderr and is closed when training ends.
    ``fit(progress=True)`` (the default) adds one; here it is passed by hand:

    >>> import optax
    >>> from jaxnet import losses, nn
    >>> from jaxnet.train import TrainState, fit
    >>> apply, params, model_state = nn.split(nn.Linear(2, 2, rngs=nn.Rngs(0)))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> bar = ProgressBar()
    >>> _ = fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data, epochs=1,
    ...         batch_size=4, callbacks=[bar], progress=False, log=None)
    >>> bar.bar is None  # closed
    True
    """

    def __init__(self):
        self.bar = None
        self._losses: list = []

    def on_train_begin(self, run):
        from tqdm.auto import tqdm

        self._per_batch = run.loader.arrays is None
        remaining = run.epochs - run.start_epoch
        total = remaining * len(run.loader) if self._per_batch else remaining
        # no stderr (a daemon, 2>&-): no bar, rather than a crash at its first write
        self.bar = tqdm(total=total, unit="batch" if self._per_batch else "epoch", leave=False,
                        disable=sys.stderr is None)

    def on_batch_end(self, run, batch, loss):
        if not self._per_batch:  # the scan path: the bar counts epochs
            return
        self._losses.append(loss)
        if batch % 10 == 0:
            recent = float(np.mean(np.asarray(jnp.stack(self._losses[-10:]))))
            self.bar.set_postfix(loss=f"{recent:.4f}", refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, run, epoch, state, logs):
        self._losses = []
        if not self._per_batch:
            self.bar.update(1)
        self.bar.set_postfix(epoch=epoch, loss=f"{logs['train_loss']:.4f}")

    def on_train_end(self, run, state):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs in a row.

    Keras's rule: training stops at the ``patience``-th epoch in a row
    without an improvement (``patience=0`` or ``1``: the first one). ``best``
    holds the best value seen and ``stopped_epoch`` the epoch it stopped at
    (or ``None``).

    Args:
      monitor: a key of the epoch logs, e.g. ``"val_loss"`` or ``"val_accuracy"``.
      patience: epochs without improvement to wait, >= 0.
      min_delta: the smallest change that counts as an improvement.
      mode: ``"min"``, ``"max"``, or ``"auto"`` (max for names containing
        ``"acc"``, such as ``"val_accuracy"``, else min).

    >>> stop = EarlyStopping("val_loss", patience=2)
    >>> [stop.on_epoch_end(None, epoch, None, {"val_loss": v})
    ...  for epoch, v in enumerate([0.5, 0.25, 0.375, 0.3125], start=1)]
    [None, None, None, True]
    >>> stop.best, stop.stopped_epoch
    (0.25, 4)
    >>> EarlyStopping("val_accuracy").mode
    'max'
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 3, min_delta: float = 0.0,
                 mode: str = "auto"):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = non_negative_int("patience", patience)
        self.min_delta = abs(float(min_delta))
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, run, epoch, state, logs):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitor {self.monitor!r} is not in the epoch logs "
                           f"{sorted(logs)} (pass val_data to fit for val_* metrics)")
        value = float(logs[self.monitor])
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.wait = value, 0
            return None
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            return True
        return None
