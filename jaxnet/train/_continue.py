"""A second ``fit`` on the state the first returned: how many epochs it has trained.

``state.step`` counts optimizer steps, not epochs: on the same data the two
agree (``step = epochs * batches per epoch``), but on other data (fewer rows,
another batch size) ``step / batches`` is another number (6 steps of 3 per
epoch read as "3 epochs of 2 steps"), and the run would continue silently at
the wrong epoch. So ``fit`` records, for each state it returns, the epoch it
reached and the batches per epoch it trained with; a later ``fit`` on that
very state (or on ``state.replace(...)``, which keeps its step array) with
other batches per epoch is refused, naming what the state trained. A state
``fit`` never returned (a ``make_train_step`` loop's) is counted by
``state.step`` and must be a whole number of epochs of the data given.

The record is keyed by the identity of the state's step array, weakly: it
keeps no state alive and dies with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

# id(state.step) -> (weak reference to that array, epochs reached, batches per epoch)
_TRAINED: dict[int, tuple[weakref.ref, int, int]] = {}


def record_epochs(state: Any, history: list[dict], steps_per_epoch: int) -> None:
    """Remember that ``state`` (which ``fit`` returns) ends epoch ``history[-1]["epoch"]``.

    Args:
      state: the ``TrainState`` about to be returned.
      history: the run's per-epoch dicts (empty: nothing recorded).
      steps_per_epoch: the batches per epoch it trained with.
    """
    if not history:
        return
    step = state.step
    key = id(step)
    try:
        ref = weakref.ref(step, lambda _, key=key: _TRAINED.pop(key, None))
    except TypeError:  # not a jax.Array (a traced or a numpy step): nothing to remember
        return
    _TRAINED[key] = (ref, int(history[-1]["epoch"]), int(steps_per_epoch))


def carry_epochs(given: Any, copy: Any) -> Any:
    """``copy`` (``fit``'s private copy of ``given``) inherits ``given``'s record."""
    entry = _recorded(given)
    if entry is not None:
        record_epochs(copy, [{"epoch": entry[0]}], entry[1])
    return copy


def _recorded(state: Any) -> tuple[int, int] | None:
    step = getattr(state, "step", None)
    entry = _TRAINED.get(id(step))
    if entry is None or entry[0]() is not step:
        return None
    return entry[1], entry[2]


def continued_epochs(state: Any, steps_per_epoch: int, epochs: int,
                     log: Callable[[str], Any] | None) -> int:
    """The epochs ``state`` has trained already: ``fit``'s record, else ``state.step`` /
    batches per epoch.

    A second ``fit`` on the state the first returned (a notebook cell run
    again) continues the epoch count, and with it the data order and keys.

    Args:
      state: the ``TrainState`` given to ``fit`` (after ``carry_epochs``).
      steps_per_epoch: the batches per epoch of this ``fit``'s data.
      epochs: the epoch to stop after.
      log: where the "continuing at epoch N" line goes (``None``: nowhere).

    Returns:
      The epochs done (0 for a fresh state).

    >>> import jax.numpy as jnp
    >>> from types import SimpleNamespace
    >>> trained = SimpleNamespace(step=jnp.asarray(6))
    >>> continued_epochs(trained, 3, 4, print)  # 6 steps of 3 per epoch
    continuing at epoch 3 (state.step 6 = 2 epochs of 3 steps)
    2
    >>> record_epochs(trained, [{"epoch": 2}], 3)  # fit returned it after epoch 2
    >>> continued_epochs(trained, 2, 4, print)  # then fewer rows: 2 batches per epoch
    Traceback (most recent call last):
    ...
    ValueError: state: expected a state at the end of an epoch of train_data (2 steps each) \
to continue from, got state.step 6; continue with the same data and batch size it was trained \
with (it trained 2 epochs of 3 steps), or start from a fresh TrainState.create(...)
    """
    step = int(state.step)
    if step == 0:
        return 0
    known = _recorded(state)
    done, rest = divmod(step, steps_per_epoch)
    if known is not None:  # fit's own count: never step / another data's batches
        done, rest = known[0], 0 if known[1] == steps_per_epoch else 1
    if rest:
        trained = "" if known is None else (f" (it trained {known[0]} epoch"
                                            f"{'s' * (known[0] != 1)} of {known[1]} steps)")
        raise ValueError(
            f"state: expected a state at the end of an epoch of train_data "
            f"({steps_per_epoch} steps each) to continue from, got state.step {step}; "
            f"continue with the same data and batch size it was trained with{trained}, or "
            f"start from a fresh TrainState.create(...)")
    if epochs <= done:
        more = max(epochs, 1)
        raise ValueError(
            f"epochs: expected more than the {done} epochs this state has trained (epochs is "
            f"the epoch to stop after, as in a resumed run), got {epochs}; pass "
            f"epochs={done + more} to train {more} more")
    if log is not None:
        log(f"continuing at epoch {done + 1} (state.step {step} = {done} epochs of "
            f"{steps_per_epoch} steps)")
    return done
