"""An epoch of training: ``make_epoch`` (one jitted scan) and ``make_epoch_runner`` (any loader)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import parallel
from ..data import DataLoader
from ..nn._functional import check_live, mark_stale
from ._batches import Batches
from ._precision import check_precision
from ._state import TrainState
from ._step import Apply, LossFn, Trains, _grad_step, make_train_step


def make_epoch(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
               donate: bool = True, precision: str = "float32"):
    """Build the jitted ``run_epoch(state, data, indices, mask) -> (state, metrics)``.

    The whole epoch is one ``lax.scan`` over batches gathered on the device, so
    Python is not involved per step and it compiles once per data shape.

    Args:
      apply: pure model function ``apply(params, model_state, x, *, train, rng)``.
      loss_fn: ``loss_fn(outputs, labels, *, mask) -> scalar``.
      optimizer: any optax ``GradientTransformation``.
      donate: donate the input state's buffers (as for ``make_train_step``).
      precision: ``"float32"`` or ``"bf16"`` (as for ``make_train_step``).

    ``run_epoch``'s arguments:

    * ``state``: a ``TrainState``.
    * ``data``: ``(x, y)`` device arrays holding the whole training set,
      ``x`` of shape ``(N, ...)``, ``y`` of shape ``(N,)``.
    * ``indices``: ``(num_batches, batch_size)`` int32 example indices, e.g.
      from ``DataLoader.index_batches(epoch)``.
    * ``mask``: ``(num_batches, batch_size)`` bool, False on padding.

    Returns:
      The jitted ``run_epoch(state, data, indices, mask) -> (state, metrics)``:
      the state after ``num_batches`` steps and ``metrics["loss"]``, float32 of
      shape ``(num_batches,)``.

    >>> import optax
    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> run_epoch = make_epoch(apply, losses.cross_entropy, optax.sgd(0.1))
    >>> data = (jnp.ones((8, 2)), jnp.array([0, 1] * 4))
    >>> indices = jnp.arange(8, dtype=jnp.int32).reshape(2, 4)
    >>> state, metrics = run_epoch(state, data, indices, jnp.ones((2, 4), bool))
    >>> int(state.step), metrics["loss"].shape
    (2, (2,))
    """
    precision = check_precision(precision)

    def run_epoch(state: TrainState, data, indices, mask):
        x_all, y_all = data

        def body(state, batch):
            idx, m = batch
            state, loss, _ = _grad_step(apply, loss_fn, optimizer, state,
                                        jnp.take(x_all, idx, axis=0),
                                        jnp.take(y_all, idx, axis=0), m, precision)
            return state, {"loss": loss}

        return jax.lax.scan(body, state, (indices, mask))

    jitted = jax.jit(run_epoch, donate_argnums=(0,) if donate else ())
    return Trains(jitted, apply, donate, "state, metrics = run_epoch(state, data, indices, mask)")

def make_epoch_runner(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                      loader: DataLoader, *, mesh=None, precision: str = "float32"):
    """One training epoch over ``loader``, the fastest way its dataset allows.

    An ``ArrayDataset`` runs as one compiled ``lax.scan`` over device-resident
    arrays (``make_epoch``); any other dataset is fetched batch by batch
    (``loader.iter_epoch(epoch, pad_last=True)``) into the jitted
    ``make_train_step``. Both see the same batches in the same order, so the
    results agree.

    With ``mesh`` (``parallel.make_mesh()``) the state is replicated over its
    devices and every batch is split over them (``loader.batch_size`` must be
    a multiple of the device count); the arrays of the scan path are split
    by rows, each device holding its share of the dataset, and the batch
    indices are split too: each device receives its rows of every batch,
    gathered from the devices' shares (the same values as from a full copy).

    Args:
      apply: pure model function ``apply(params, model_state, x, *, train, rng)``.
      loss_fn: ``loss_fn(outputs, labels, *, mask) -> scalar``.
      optimizer: any optax ``GradientTransformation``.
      loader: a ``DataLoader`` of ``(x, y)`` examples.
      mesh: optional ``jax.sharding.Mesh`` for data-parallel training.
      precision: ``"float32"`` or ``"bf16"`` (as for ``make_train_step``).

    Returns:
      ``run(state, epoch, on_batch=None) -> (state, losses, counts)``:
      ``epoch`` counts from 0; ``losses`` and ``counts`` are numpy arrays of
      the per-batch mean loss and number of real examples;
      ``on_batch(i, loss)`` is called once per batch, in order, with the
      batch index and its loss (a 0-d float32 array): after each step of the
      Python loop, and on the scan path after the epoch's compiled scan, with
      the same values.
      ``run.compile_seconds`` is set after the first call (0 for the loop).

    >>> import optax
    >>> from jaxnet import nn, losses
    >>> from jaxnet.data import ArrayDataset
    >>> apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> loader = DataLoader(ArrayDataset(np.ones((8, 2), np.float32), np.array([0, 1] * 4)),
    ...                     batch_size=4)
    >>> run = make_epoch_runner(apply, losses.cross_entropy, optax.sgd(0.1), loader)
    >>> state, batch_losses, counts = run(state, 0)
    >>> int(state.step), batch_losses.shape, counts.tolist()
    (2, (2,), [4, 4])
    """
    runner = epoch_runner(apply, loss_fn, optimizer, Batches(loader, mesh),
                          check_precision(precision))

    def run(state, epoch, on_batch=None):
        check_live(state, "state", "state, losses, counts = run(state, epoch)")
        state, losses, counts, compile_seconds = runner(state, epoch, on_batch)
        if compile_seconds:
            run.compile_seconds = compile_seconds
        mark_stale(getattr(apply, "model", None))
        return state, losses, counts

    run.compile_seconds = 0.0
    return run


def epoch_runner(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                 batches: Batches, precision: str = "float32"):
    """The runner behind ``make_epoch_runner``; ``fit`` calls it directly.

    Returns:
      ``run(state, epoch, on_batch=None) -> (state, losses, counts,
      compile_seconds)``: as ``make_epoch_runner``'s, plus the seconds this
      call spent compiling (0.0 but on the scan's first call).
    """
    if batches.mesh is not None:
        parallel.check_batch_size(batches.loader.batch_size, batches.mesh)
    if batches.on_device:
        return _scan_runner(make_epoch(apply, loss_fn, optimizer, precision=precision)._jitted,
                            batches)
    # the bare jitted functions: fit owns its states and writes the model back itself
    return _loop_runner(make_train_step(apply, loss_fn, optimizer,
                                        precision=precision)._jitted, batches)


def _scan_runner(epoch_fn, batches: Batches):
    """Each epoch as one compiled scan over the device-resident arrays, compiled on first use."""
    compiled: list = []  # [(the compiled epoch, the device arrays)] after the first call

    def run(state, epoch, on_batch=None):
        indices, mask, counts = batches.index_batches(epoch)
        state = batches.place(state)
        compile_seconds = 0.0
        if not compiled:
            t0 = time.perf_counter()
            data = batches.arrays()
            compiled.append((epoch_fn.lower(state, data, indices, mask).compile(), data))
            compile_seconds = time.perf_counter() - t0
        program, data = compiled[0]
        state, metrics = program(state, data, indices, mask)
        if on_batch is not None:  # after the compiled epoch, once per batch, in order
            for i, loss in enumerate(metrics["loss"]):  # 0-d arrays, as the loop passes
                on_batch(i, loss)
        return state, np.asarray(metrics["loss"]), counts, compile_seconds

    return run


def _loop_runner(step, batches: Batches):
    """Each epoch as a Python loop of the jitted step over host batches."""

    def run(state, epoch, on_batch=None):
        losses, counts = [], batches.counts(epoch)
        state = batches.place(state)
        for i, batch in enumerate(batches.host_batches(epoch)):
            state, metrics = step(state, batch)
            losses.append(metrics["loss"])
            if on_batch is not None:
                on_batch(i, metrics["loss"])
        return state, np.asarray(jnp.stack(losses)), counts, 0.0

    return run
