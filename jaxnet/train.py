"""Training as pure, jitted functions: the PyTorch training loop, the JAX way.

The pieces, from small to large:

* ``TrainState`` — a pytree ``(step, params, opt_state, rng)``; nothing else
  is mutated anywhere.
* ``make_train_step(apply, loss_fn, optimizer)`` — one jitted
  ``(state, batch) -> (state, metrics)``: forward, ``jax.value_and_grad``,
  optax update. It replaces ``zero_grad(); loss.backward(); step()``.
* ``make_epoch(...)`` — a whole epoch over device-resident arrays as one
  jitted ``lax.scan`` (the fast path).
* ``evaluate(...)`` — loss and accuracy without gradients (``torch.no_grad``).
* ``fit(...)`` — the loop: epochs, progress bar, validation, history,
  checkpoints and resume, composed from the pieces above.

``loss_fn(outputs, labels, *, mask)`` is any ``jaxnet.losses`` function (or
one with that signature) using ``reduction="mean"``; ``mask`` is False on the
padding of the last batch, so padded rows never count.

>>> import optax
>>> from jaxnet import nn, losses
>>> apply, params = nn.functional(nn.MLP(2, [8], 2, rngs=0))
>>> optimizer = optax.sgd(0.1)
>>> state = TrainState.create(params, optimizer, seed=0)
>>> step = make_train_step(apply, losses.cross_entropy, optimizer)
>>> state, metrics = step(state, (jnp.ones((4, 2)), jnp.array([0, 1, 0, 1])))
>>> int(state.step), metrics["loss"].shape
(1, ())
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from ._tree import leaf_paths
from .data import ArrayDataset, DataLoader

__all__ = [
    "NonFiniteError",
    "TrainState",
    "evaluate",
    "fit",
    "make_epoch",
    "make_train_step",
]

Apply = Callable[[Any, jax.Array], jax.Array]
LossFn = Callable[..., jax.Array]


@struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    Attributes:
      step: int32 scalar, the number of optimizer steps taken.
      params: the model parameters (a nested dict of arrays).
      opt_state: the optax optimizer state.
      rng: a raw ``uint32[2]`` ``jax.random`` key for stochastic layers.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation, *,
               seed: int = 0) -> TrainState:
        """Fresh state: step 0, ``optimizer.init(params)``, key from ``seed``."""
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer: expected an optax GradientTransformation such as "
                            f"optax.adam(1e-3), got {type(optimizer).__name__}")
        # A copy: the jitted steps donate the state's buffers, and the caller's
        # own ``params`` must stay usable afterwards.
        params = jax.tree.map(lambda p: jnp.array(p, copy=True), params)
        return cls(step=jnp.zeros((), jnp.int32), params=params,
                   opt_state=optimizer.init(params), rng=jax.random.PRNGKey(seed))


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or Inf; ``epoch``, ``step`` and ``names`` say where."""

    def __init__(self, epoch: int, step: int, names: list[str]):
        self.epoch, self.step, self.names = epoch, step, names
        super().__init__(f"non-finite values at epoch {epoch}, step {step} of that epoch: "
                         f"{', '.join(names)}; the last checkpoint (if any) is kept")


def _split_batch(batch) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    if len(batch) == 2:
        return batch[0], batch[1], None
    if len(batch) == 3:
        return batch
    raise ValueError(f"batch: expected (x, y) or (x, y, mask), got a tuple of {len(batch)}")


def _grad_step(apply: Apply, loss_fn: LossFn, optimizer, state: TrainState, x, y, mask):
    """One optimizer step; returns the new state, the loss and the gradients."""

    def objective(params):
        return loss_fn(apply(params, x), y, mask=mask)

    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, loss, grads


def _finite_flags(loss, grads) -> jax.Array:
    """``[loss finite, grad leaf 0 finite, ...]``: a few bools, cheap next to the matmuls."""
    return jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(g).all() for g in jax.tree.leaves(grads)])


def make_train_step(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    check_finite: bool = False, donate: bool = True):
    """Build the jitted ``train_step(state, batch) -> (state, metrics)``.

    Args:
      apply: pure model function ``apply(params, x) -> outputs``.
      loss_fn: ``loss_fn(outputs, labels, *, mask) -> scalar``.
      optimizer: any optax ``GradientTransformation``.
      check_finite: also return ``metrics["finite"]``, a bool vector
        ``[loss, *grad leaves]`` (see ``NonFiniteError``).
      donate: donate the input state's buffers (the old state is consumed, as
        when PyTorch updates parameters in place).

    ``batch`` is ``(x, y)`` or ``(x, y, mask)``; keep its shape fixed (e.g.
    ``DataLoader(..., pad_last=True)``) so the step compiles once.
    """

    def train_step(state: TrainState, batch):
        x, y, mask = _split_batch(batch)
        state, loss, grads = _grad_step(apply, loss_fn, optimizer, state, x, y, mask)
        metrics = {"loss": loss}
        if check_finite:
            metrics["finite"] = _finite_flags(loss, grads)
        return state, metrics

    return jax.jit(train_step, donate_argnums=(0,) if donate else ())


def make_epoch(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
               donate: bool = True):
    """Build the jitted ``run_epoch(state, data, indices, mask) -> (state, metrics)``.

    The whole epoch is one ``lax.scan`` over batches gathered on the device, so
    Python is not involved per step and it compiles once per data shape.

    Args (of ``run_epoch``):
      state: a ``TrainState``.
      data: ``(x, y)`` device arrays holding the whole training set.
      indices: ``(num_batches, batch_size)`` int32 example indices, e.g. from
        ``DataLoader.index_batches(epoch)``.
      mask: ``(num_batches, batch_size)`` bool, False on padding.

    Returns ``metrics["loss"]`` of shape ``(num_batches,)``.
    """

    def run_epoch(state: TrainState, data, indices, mask):
        x_all, y_all = data

        def body(state, batch):
            idx, m = batch
            state, loss, _ = _grad_step(apply, loss_fn, optimizer, state,
                                        jnp.take(x_all, idx, axis=0),
                                        jnp.take(y_all, idx, axis=0), m)
            return state, {"loss": loss}

        return jax.lax.scan(body, state, (indices, mask))

    return jax.jit(run_epoch, donate_argnums=(0,) if donate else ())


def _eval_batches(apply, loss_fn, params, data, indices, mask):
    """Sums over padded batches in one scan: loss (if loss_fn), correct (if classes), count."""
    x_all, y_all = data

    def body(totals, batch):
        idx, m = batch
        x, y = jnp.take(x_all, idx, axis=0), jnp.take(y_all, idx, axis=0)
        out = apply(params, x)
        mf = m.astype(jnp.float32)
        sums = {"count": jnp.sum(mf)}
        if loss_fn is not None:
            sums["loss"] = loss_fn(out, y, mask=mf, reduction="sum")
        if out.ndim == y.ndim + 1:  # class scores vs integer labels
            sums["accuracy"] = jnp.sum((jnp.argmax(out, -1) == y) * mf)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        return totals, None

    first, _ = body(None, (indices[0], mask[0]))
    totals, _ = jax.lax.scan(body, first, (indices[1:], mask[1:]))
    count = totals.pop("count")
    return {k: v / count for k, v in totals.items()}


_eval_jit = jax.jit(_eval_batches, static_argnums=(0, 1))


def _as_arrays(data, name: str) -> tuple:
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, ArrayDataset):
        data = data.arrays
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(f"{name}: expected (x, y) arrays, an ArrayDataset or a DataLoader, "
                        f"got {type(data).__name__}")
    ArrayDataset(*data)  # validates equal lengths
    return tuple(data)


def evaluate(apply: Apply, params: Any, data, *, loss_fn: LossFn | None = None,
             batch_size: int = 1000) -> dict[str, float]:
    """Loss and accuracy over a dataset, without gradients (``model.eval()`` + ``no_grad``).

    Args:
      apply: pure model function.
      params: model parameters.
      data: ``(x, y)`` arrays, an ``ArrayDataset`` or a ``DataLoader``.
      loss_fn: optional loss (``reduction=`` and ``mask=`` keywords); its mean
        is returned as ``"loss"``.
      batch_size: examples per forward pass (memory, not results).

    Returns:
      ``{"accuracy": float}`` for class scores vs integer labels, plus
      ``"loss"`` when ``loss_fn`` is given.
    """
    x, y = _as_arrays(data, "data")
    loader = DataLoader(ArrayDataset(x, y), batch_size=min(batch_size, len(x)))
    indices, mask = loader.index_batches(0)
    totals = _eval_jit(apply, loss_fn, params, (jnp.asarray(x), jnp.asarray(y)), indices, mask)
    return {k: float(v) for k, v in totals.items()}


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def _find_non_finite(step_fn, start: TrainState, x, y, indices, mask, epoch: int):
    """Replay an epoch from its start with per-leaf checks; raise naming the first culprit.

    Only runs after the cheap checks (per-step loss, end-of-epoch params) failed,
    so the hot path pays nothing for the diagnosis.
    """
    state = start
    for i, batch in enumerate(_host_batches(x, y, indices, mask)):
        state, metrics = step_fn(state, batch)
        finite = np.asarray(metrics["finite"])
        if not finite.all():
            names = ["loss" if j == 0 else f"grad of {leaf_paths(start.params)[j - 1]}"
                     for j in np.flatnonzero(~finite)]
            raise NonFiniteError(epoch, i, names)
    raise NonFiniteError(epoch, indices.shape[0] - 1, ["parameters after the epoch"])


def fit(state: TrainState, apply: Apply, loss_fn: LossFn,
        optimizer: optax.GradientTransformation, train_data, *, epochs: int,
        batch_size: int = 64, shuffle: bool = True, seed: int = 0, val_data=None,
        fast: bool = True, check_finite: bool = True, checkpoint_dir=None, keep: int = 3,
        resume: bool = False, config: dict | None = None, progress: bool = True,
        log: Callable[[str], Any] | None = print) -> tuple[TrainState, list[dict]]:
    """Train for ``epochs`` epochs; return the final state and per-epoch history.

    Args:
      state: initial ``TrainState`` (also the template when resuming).
      apply, loss_fn, optimizer: as for ``make_train_step``.
      train_data: ``(x, y)`` arrays, an ``ArrayDataset`` or a ``DataLoader``
        (whose ``batch_size``, ``shuffle`` and ``seed`` then win).
      epochs: total number of epochs (a resumed run continues up to it).
      batch_size, shuffle, seed: batching when ``train_data`` is arrays; the
        order of epoch ``e`` depends only on ``(seed, e)``.
      val_data: optional ``(x, y)`` evaluated after every epoch.
      fast: run each epoch as one jitted ``lax.scan`` over device-resident data
        (default); ``False`` steps batch by batch from the host.
      check_finite: stop with ``NonFiniteError`` naming the epoch, step and
        parameter when a loss or gradient is NaN/Inf. The hot path only checks
        the per-step loss and, after each epoch, the parameters (a NaN gradient
        poisons both); when either fails, the epoch is replayed from a copy of
        its starting state with per-parameter checks to name the culprit.
      checkpoint_dir: save the state after every epoch there (keep the last
        ``keep``); with ``resume=True`` continue from the newest intact one.
      config: JSON-able run configuration stored with each checkpoint.
      progress: show a tqdm progress bar.
      log: called with one summary line per epoch (``None`` for silence).

    Returns:
      ``(state, history)``; ``history[i]`` has ``epoch``, ``train_loss``,
      ``train_seconds`` (training only), ``seconds`` (with validation) and,
      with ``val_data``, ``val_loss``/``val_accuracy``.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    log = log or (lambda _: None)
    loader = train_data if isinstance(train_data, DataLoader) else DataLoader(
        ArrayDataset(*_as_arrays(train_data, "train_data")), batch_size=batch_size,
        shuffle=shuffle, seed=seed)
    x, y = _as_arrays(loader.dataset, "train_data")
    start_epoch, history = 0, []
    if checkpoint_dir is not None:
        from . import checkpoint

        checkpoint.check_new_run(checkpoint_dir, resume=resume)
        if resume:
            state, start_epoch, history, saved = checkpoint.resume_state(checkpoint_dir, state,
                                                                         log=log)
            _check_same_config(saved, config, checkpoint_dir)

    if fast:
        runner = make_epoch(apply, loss_fn, optimizer)
        data = (jax.device_put(x), jax.device_put(y))
    else:
        runner = make_train_step(apply, loss_fn, optimizer)
    compiled = None

    bar = None
    if progress and start_epoch < epochs:
        from tqdm.auto import tqdm

        total = epochs - start_epoch if fast else (epochs - start_epoch) * len(loader)
        bar = tqdm(total=total, unit="epoch" if fast else "batch", leave=False)
    try:
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            indices, mask = loader.index_batches(epoch)
            entry: dict[str, Any] = {"epoch": epoch + 1}
            # The donated state is consumed; keep a copy to diagnose a NaN (cheap: once an epoch).
            start = jax.tree.map(jnp.copy, state) if check_finite else None
            if fast:
                if compiled is None:
                    compiled = runner.lower(state, data, indices, mask).compile()
                    entry["compile_seconds"] = time.perf_counter() - t0
                    t0 = time.perf_counter()
                state, metrics = compiled(state, data, indices, mask)
                losses = np.asarray(metrics["loss"])
            else:
                state, losses = _host_epoch(runner, state, x, y, indices, mask, bar, epoch)
            entry["train_seconds"] = time.perf_counter() - t0  # losses are on the host: done
            if check_finite and not (np.isfinite(losses).all() and _all_finite(state.params)):
                checked_step = make_train_step(apply, loss_fn, optimizer, check_finite=True,
                                               donate=False)
                _find_non_finite(checked_step, start, x, y, indices, mask, epoch + 1)
            counts = mask.sum(axis=1)
            entry["train_loss"] = float(np.sum(losses * counts) / np.sum(counts))
            if val_data is not None:
                val = evaluate(apply, state.params, val_data, loss_fn=loss_fn)
                entry.update({f"val_{k}": v for k, v in val.items()})
            entry["seconds"] = time.perf_counter() - t0
            history.append(entry)
            if checkpoint_dir is not None:
                checkpoint.save(checkpoint_dir, state, step=epoch + 1, keep=keep,
                                metadata={"epoch": epoch + 1, "history": history,
                                          "config": config or {}})
            if bar is None:
                log(_epoch_line(entry, epochs))
            else:
                bar.update(1 if fast else 0)
                bar.set_postfix(loss=f"{entry['train_loss']:.4f}")
                with bar.external_write_mode():  # the line above the bar, not through it
                    log(_epoch_line(entry, epochs))
    finally:
        if bar is not None:
            bar.close()
    return state, history


def _host_batches(x, y, indices, mask):
    """``(x, y, mask)`` batches of one epoch, gathered on the host from its index batches."""
    for idx, m in zip(indices, mask, strict=True):
        yield x[idx], y[idx], m


def _check_same_config(saved: dict | None, config: dict | None, directory) -> None:
    """A run resumes only with the configuration it started with (``epochs`` may grow)."""
    if saved is None or config is None:
        return
    diff = {k: (saved.get(k), v) for k, v in config.items() if k != "epochs" and saved.get(k) != v}
    if diff:
        raise ValueError(f"resume: {directory} was written by a run with another configuration: "
                         + ", ".join(f"{k} {a!r} (checkpoint) vs {b!r} (now)"
                                     for k, (a, b) in diff.items()))


def _host_epoch(step_fn, state, x, y, indices, mask, bar, epoch):
    """One epoch of jitted steps driven from Python (the DataLoader path)."""
    losses = []
    running = 0.0
    for i, batch in enumerate(_host_batches(x, y, indices, mask)):
        state, metrics = step_fn(state, batch)
        losses.append(metrics["loss"])
        if bar is not None:
            if i % 10 == 0 or i == indices.shape[0] - 1:
                running = float(np.mean(np.asarray(losses[-10:])))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running:.4f}", refresh=False)
    return state, np.asarray(jnp.stack(losses))


def _epoch_line(entry: dict, epochs: int) -> str:
    parts = [f"epoch {entry['epoch']}/{epochs}", f"train_loss {entry['train_loss']:.4f}"]
    if "val_loss" in entry:
        parts.append(f"val_loss {entry['val_loss']:.4f}")
    if "val_accuracy" in entry:
        parts.append(f"val_accuracy {entry['val_accuracy']:.4f}")
    parts.append(f"{entry['seconds']:.2f}s")
    return "  ".join(parts)
