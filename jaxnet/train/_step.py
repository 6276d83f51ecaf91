"""The train step: one optimizer step in training mode, jitted, and its NaN/Inf flags."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._tree import leaf_paths
from ..nn._functional import check_live, mark_stale
from ..nn._requires_grad import check as check_requires_grad
from ._precision import cast_for_compute, cast_outputs, check_precision, like
from ._state import TrainState

Apply = Callable[..., tuple[jax.Array, Any]]
LossFn = Callable[..., jax.Array]


# What a PyTorch user sets on an optimizer; optax's optimizers are NamedTuples that take any
# attribute and never read it, so ``optimizer.lr = 0.1`` would change nothing.
_HYPERPARAMS = ("lr", "learning_rate", "momentum", "weight_decay", "betas", "eps", "nesterov")


def check_optimizer_attributes(optimizer) -> None:
    """``TypeError`` naming ``optim.set_learning_rate`` if ``optimizer.lr = ...`` was written.

    >>> import optax
    >>> opt = optax.sgd(0.1)
    >>> check_optimizer_attributes(opt)
    >>> opt.lr = 0.01
    >>> check_optimizer_attributes(opt)
    Traceback (most recent call last):
    ...
    TypeError: optimizer.lr: an optax optimizer ignores attributes set on it, so the rate ...
    """
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        name = getattr(optimizer, "__name__", type(optimizer).__name__)
        built = (f"call it first: optax.{name}(learning_rate=1e-3)" if callable(optimizer)
                 else "e.g. optax.adam(1e-3)")
        raise TypeError(f"optimizer: expected an optax GradientTransformation, got {name}; "
                        f"{built}")
    set_here = [n for n in _HYPERPARAMS if n in getattr(optimizer, "__dict__", ())]
    if set_here:
        raise TypeError(
            f"optimizer.{set_here[0]}: an optax optimizer ignores attributes set on it, so the "
            f"rate would not change; build it with optax.inject_hyperparams(optax.adam)"
            f"(learning_rate=1e-3) and write state = jaxnet.optim.set_learning_rate(state, lr)"
            f" (in a callback: return it from on_epoch_begin), or build a new optimizer")


def _split_batch(batch) -> tuple[Any, Any, Any]:
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1], None
    if isinstance(batch, tuple | list) and len(batch) == 3:
        return tuple(batch)
    raise ValueError(f"batch: expected a tuple (x, y) or (x, y, mask), got "
                     f"{type(batch).__name__}" + (f" of {len(batch)}" if hasattr(batch, "__len__")
                                                  else ""))


def check_scalar_loss(loss: Any) -> None:
    """``TypeError`` naming ``reduction="mean"`` for a loss that is not one number.

    ``nn.CrossEntropyLoss(reduction="none")`` gives one loss per example, which
    ``jax.value_and_grad`` refuses with "Gradient only defined for
    scalar-output functions". Checked on the traced shape, once per compile.

    >>> check_scalar_loss(jnp.zeros(4))
    Traceback (most recent call last):
    ...
    TypeError: loss_fn: expected a scalar loss to differentiate, got shape (4,) ...
    """
    shape = getattr(loss, "shape", None)
    if shape is not None and tuple(shape) != ():
        raise TypeError(f"loss_fn: expected a scalar loss to differentiate, got shape "
                        f"{tuple(shape)} (one loss per example: reduction=\"none\"); build the "
                        f"loss with reduction=\"mean\" (the default), e.g. nn.CrossEntropyLoss() "
                        f"or losses.cross_entropy")


def _grad_step(apply: Apply, loss_fn: LossFn, optimizer, state: TrainState, x, y, mask,
               precision: str = "float32"):
    """One optimizer step in training mode; returns the new state, the loss and the grads.

    With ``precision="bf16"`` the forward pass computes in bfloat16 (``_precision``);
    the gradients come back float32 through the casts.
    """
    key = jax.random.fold_in(state.rng, state.step)
    x = cast_for_compute(x, precision)

    def objective(params):
        outputs, model_state = apply(cast_for_compute(params, precision), state.model_state, x,
                                     train=True, rng=key)
        model_state = like(model_state, state.model_state, precision)
        loss = loss_fn(cast_outputs(outputs, precision), y, mask=mask)
        check_scalar_loss(loss)  # the shape is known while tracing: free
        return loss, model_state

    (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state)
    return new_state, loss, grads


def _finite_flags(loss, grads) -> jax.Array:
    """``[loss finite, grad leaf 0 finite, ...]``: a few bools, cheap next to the matmuls."""
    return jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(g).all() for g in jax.tree.leaves(grads)])


def first_non_finite(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                     state: TrainState, batches: Iterable, precision: str = "float32",
                     ) -> tuple[int, list[str]] | None:
    """Replay ``batches`` from ``state`` with a per-step check, to name the first culprit.

    Args:
      apply, loss_fn, optimizer: as for ``make_train_step``.
      state: the state to replay from; not consumed (the replay does not donate).
      batches: the padded batches, as ``make_train_step`` takes them.
      precision: as for ``make_train_step`` (the run's, so the replay is that run).

    Returns:
      ``(i, names)`` for the first batch ``i`` whose loss or a gradient is not
      finite, or after which a value of the state is not (``names`` like
      ``["loss", "grad of layers/0/kernel"]`` or
      ``["model_state['layers'][1]['running_var']"]``: BatchNorm statistics and
      the optimizer state count, as all that a checkpoint saves), or ``None``.
    """
    from ..checkpoint._finite import all_finite, non_finite_paths

    step = make_train_step(apply, loss_fn, optimizer, check_finite=True, donate=False,
                           precision=precision)._jitted
    paths = leaf_paths(state.params)
    replay = state
    for i, batch in enumerate(batches):
        replay, metrics = step(replay, batch)
        flags = np.asarray(metrics["finite"])
        names = ["loss" if j == 0 else f"grad of {paths[j - 1]}"
                 for j in np.flatnonzero(~flags)]
        if names:  # the cause; the state's values follow from it
            return i, names
        if not all_finite(replay):  # finite loss and gradients: a statistic or moment
            return i, non_finite_paths(replay)
    return None


def make_train_step(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    check_finite: bool = False, donate: bool = True,
                    precision: str = "float32"):
    """Build the jitted ``train_step(state, batch) -> (state, metrics)``.

    Args:
      apply: pure model function ``apply(params, model_state, x, *, train, rng)``.
      loss_fn: ``loss_fn(outputs, labels, *, mask) -> scalar``.
      optimizer: any optax ``GradientTransformation``.
      check_finite: also return ``metrics["finite"]``, a bool vector
        ``[loss, *grad leaves]`` (see ``NonFiniteError``).
      donate: donate the input state's buffers (the old state is consumed, as
        when PyTorch updates parameters in place: reusing it raises "Array has
        been deleted").
      precision: ``"float32"`` (default) or ``"bf16"`` (also ``"bfloat16"``):
        the forward pass in bfloat16, as under PyTorch's ``torch.autocast``,
        while the parameters, optimizer state, gradients and loss stay float32.

    ``batch`` is ``(x, y)`` or ``(x, y, mask)``: ``x`` of shape
    ``(batch, ...)``, ``y`` of shape ``(batch,)`` (int labels) or whatever
    ``loss_fn`` expects, ``mask`` bool ``(batch,)``, False on padding. Keep its
    shape fixed (e.g. ``DataLoader(..., pad_last=True)``) so the step compiles
    once.

    Returns:
      The jitted ``train_step(state, batch) -> (state, metrics)``: the new
      ``TrainState`` (``step`` + 1) and ``metrics["loss"]``, a float32 scalar
      (plus ``metrics["finite"]``, bool ``(1 + num_leaves,)``, with
      ``check_finite``).

    >>> import optax
    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> step = make_train_step(apply, losses.cross_entropy, optax.sgd(0.1), check_finite=True)
    >>> state, metrics = step(state, (jnp.ones((8, 2)), jnp.array([0, 1] * 4)))
    >>> int(state.step), metrics["loss"].shape, bool(metrics["finite"].all())
    (1, (), True)
    """

    model = getattr(apply, "model", None)  # requires_grad set after nn.split: refused
    if model is not None:
        check_requires_grad(model, metadata=True)
    check_optimizer_attributes(optimizer)
    precision = check_precision(precision)

    def train_step(state: TrainState, batch):
        x, y, mask = _split_batch(batch)
        state, loss, grads = _grad_step(apply, loss_fn, optimizer, state, x, y, mask, precision)
        metrics = {"loss": loss}
        if check_finite:
            metrics["finite"] = _finite_flags(loss, grads)
        return state, metrics

    jitted = jax.jit(train_step, donate_argnums=(0,) if donate else ())
    return Trains(jitted, apply, donate, "state, metrics = step(state, batch)")


class Trains:
    """A jitted training function of ``(state, ...)`` that keeps the learner's objects honest.

    A thin Python wrapper (about 1 µs a call on a 2-core AMD EPYC: 0.6 µs
    for the consumed check, 0.4 µs for the stale mark): before the call, a consumed
    (donated) state raises ``ConsumedStateError`` rather than XLA's "Buffer
    has been deleted"; after it, the model ``apply`` was split from is marked
    stale until ``nn.update(model, state)``. Everything else (``lower``,
    ``eval_shape``…) is the jitted function's.
    """

    __slots__ = ("_jitted", "_apply", "_donate", "_fix")

    def __init__(self, jitted, apply, donate: bool, fix: str):
        self._jitted, self._apply, self._donate, self._fix = jitted, apply, donate, fix

    def __call__(self, state, *args):
        if self._donate:
            # the step counter first: a state the step consumed has it deleted (cheap)
            check_live(state.step if isinstance(state, TrainState) else state, "state",
                       self._fix)
        try:
            out = self._jitted(state, *args)
        except (RuntimeError, ValueError) as e:  # another leaf consumed: name it our way
            check_live(state, "state", self._fix)
            raise e
        mark_stale(getattr(self._apply, "model", None))
        return out

    def __getattr__(self, name):
        return getattr(self._jitted, name)

