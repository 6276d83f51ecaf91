"""``Checkpoint``: save the state after every epoch (``fit(..., checkpoint_dir=)``)."""

from __future__ import annotations

from .._checks import positive_int
from ._protocol import Callback


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

    >>> import numpy as np
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
        from .. import checkpoint
        from ..checkpoint._runs import epoch_metadata

        checkpoint.save(self.directory, state, step=epoch, keep=self.keep,
                        metadata=epoch_metadata(epoch, run.history, run.config or {}))
