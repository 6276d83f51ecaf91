"""``FiniteCheck``: stop at the first NaN/Inf, naming where; ``NonFiniteError``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._protocol import Callback


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

    >>> import numpy as np
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
        from ..checkpoint._finite import all_finite, non_finite_paths, refusal

        if run.start_epoch > 0 and epoch == run.start_epoch + 1 and not all_finite(state):
            error = NonFiniteError(epoch, 0, non_finite_paths(state))  # e.g. a NaN checkpoint
            error.args = (refusal(f"state: the state epoch {epoch} would continue from (the "
                                  f"checkpoint step_{epoch - 1:08d} of a resumed run, or a "
                                  f"state trained before)", error.names),)
            raise error
        # The train step donates (consumes) the state: keep a copy to replay from.
        self._start = jax.tree.map(jnp.copy, state)

    def on_epoch_end(self, run, epoch, state, logs):
        from ..checkpoint._finite import all_finite, non_finite_paths

        if math.isfinite(logs["train_loss"]) and all_finite(state):
            return None
        found = None if run.find_non_finite is None else run.find_non_finite(self._start, epoch)
        if found is not None:
            raise NonFiniteError(epoch, *found)
        names = non_finite_paths(state) or ["loss"]
        raise NonFiniteError(epoch, len(run.loader) - 1, [f"{n} after the epoch" for n in names])
