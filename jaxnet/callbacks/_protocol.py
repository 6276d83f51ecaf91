"""The protocol: ``Run`` (what is being trained, on what data) and ``Callback`` (the hooks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax


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

    >>> import numpy as np
    >>> from jaxnet.callbacks import Callback, Run
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

    >>> import numpy as np
    >>> from jaxnet.callbacks import Callback, Run
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
    >>> import numpy as np
    >>> from jaxnet.callbacks import Callback, Run
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
