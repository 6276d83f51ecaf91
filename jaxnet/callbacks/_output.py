"""What a run prints: ``EpochLog`` (one line per epoch) and ``ProgressBar`` (tqdm)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._protocol import Callback


def _write_line(log: Callable[[str], Any], line: str) -> None:
    """Print above any tqdm bar instead of through it."""
    tqdm_module = sys.modules.get("tqdm.auto") or sys.modules.get("tqdm")
    if tqdm_module is None:
        log(line)
        return
    with tqdm_module.tqdm.external_write_mode():
        log(line)


def format_seconds(seconds: float) -> str:
    """A duration with the digits it needs: ``1.50s``, ``37ms``, ``2.4ms``, ``0.31ms``.

    A toy dataset's epoch takes a few milliseconds, which ``f"{seconds:.2f}s"``
    showed as a column of ``0.00s``.

    >>> [format_seconds(s) for s in (12.345, 1.5, 0.0374, 0.00243, 0.000312)]
    ['12.35s', '1.50s', '37ms', '2.4ms', '0.31ms']
    """
    if seconds >= 0.9995:  # what would print as 1000ms
        return f"{seconds:.2f}s"
    milliseconds = seconds * 1000
    if milliseconds >= 10:
        return f"{milliseconds:.0f}ms"
    return f"{milliseconds:.2g}ms"


def format_epoch(logs: dict, epochs: int) -> str:
    """``epoch 2/5  train_loss 0.1234  val_loss …  val_accuracy …  1.23s`` (or ``4.2ms``)."""
    parts = [f"epoch {logs['epoch']}/{epochs}", f"train_loss {logs['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in logs.items()
              if k.startswith("val_") and isinstance(v, float)]
    parts.append(format_seconds(logs["seconds"]))
    return "  ".join(parts)


class EpochLog(Callback):
    """One line per epoch: losses, validation metrics and time, through ``log``.

    Args:
      log: called with each line (a ``str``); default ``print``.

    >>> from jaxnet.callbacks import Run
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

    >>> import numpy as np
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
