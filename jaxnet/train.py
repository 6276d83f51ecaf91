"""Training as pure, jitted functions: the PyTorch training loop, the JAX way.

The pieces, from small to large, each usable on its own:

* ``TrainState`` — a pytree ``(step, params, opt_state, rng, model_state)``;
  nothing else is mutated anywhere.
* ``make_train_step(apply, loss_fn, optimizer)`` — one jitted
  ``(state, batch) -> (state, metrics)``: the model in training mode with a
  fresh key, ``jax.value_and_grad``, the optax update. It replaces
  ``model.train(); zero_grad(); loss.backward(); step()``.
* ``make_epoch(...)`` — a whole epoch over device-resident arrays as one
  jitted ``lax.scan`` (the fast path).
* ``make_epoch_runner(..., loader)`` — one epoch of any ``DataLoader``: the
  scan for array datasets, a Python loop over the jitted step otherwise.
* ``evaluate(...)`` — loss and accuracy in evaluation mode, without
  gradients (``model.eval()`` + ``torch.no_grad()``).
* ``fit(...)`` — a short loop: resume, run an epoch, validate, callbacks.

Many devices: ``make_epoch_runner``, ``evaluate`` and ``fit`` take
``mesh=parallel.make_mesh()``; they place the state replicated and the
batches sharded over it, and the same jitted functions compile for that
(``jaxnet.parallel``).

``apply(params, model_state, x, *, train, rng) -> (outputs, model_state)`` is
the pure model function from ``nn.functional``. ``loss_fn(outputs, labels, *,
mask)`` is any ``jaxnet.losses`` function (or one with that signature) using
``reduction="mean"``; ``mask`` is False on the padding of the last batch, so
padded rows never count.

>>> import optax
>>> from jaxnet import nn, losses
>>> apply, params, model_state = nn.functional(nn.MLP(2, [8], 2, rngs=0))
>>> optimizer = optax.sgd(0.1)
>>> state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
>>> step = make_train_step(apply, losses.cross_entropy, optimizer)
>>> state, metrics = step(state, (jnp.ones((4, 2)), jnp.array([0, 1, 0, 1])))
>>> int(state.step), metrics["loss"].shape
(1, ())
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from . import callbacks as cb
from . import parallel
from ._checks import positive_int, seed_int
from ._tree import leaf_paths
from .callbacks import NonFiniteError
from .data import ArrayDataset, DataLoader

__all__ = [
    "NonFiniteError",
    "TrainState",
    "evaluate",
    "fit",
    "make_epoch",
    "make_epoch_runner",
    "make_train_step",
]

Apply = Callable[..., tuple[jax.Array, Any]]
LossFn = Callable[..., jax.Array]


@struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    Attributes:
      step: int32 scalar, the number of optimizer steps taken.
      params: the model parameters (a nested dict of arrays).
      opt_state: the optax optimizer state.
      rng: a raw ``uint32[2]`` ``jax.random`` key; step ``s`` uses
        ``fold_in(rng, s)`` for Dropout, so a resumed run draws the same keys.
      model_state: non-parameter model state, e.g. BatchNorm running
        statistics (``{}`` for most models).

    >>> import optax
    >>> from jaxnet import nn
    >>> apply, params, model_state = nn.functional(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state, seed=0)
    >>> int(state.step), state.rng.shape, state.rng.dtype
    (0, (2,), dtype('uint32'))
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    model_state: Any = struct.field(default_factory=dict)

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation, *,
               model_state: Any = None, seed: int = 0) -> TrainState:
        """Fresh state: step 0, ``optimizer.init(params)``, key from ``seed``.

        Args:
          params: the model's parameters (``nn.functional(model).params``).
          optimizer: any optax ``GradientTransformation``, e.g. ``optax.adam(1e-3)``.
          model_state: the model's non-parameter state (``nn.functional(model).state``).
          seed: int in [0, 2**32) for the per-step keys (Dropout).

        Returns:
          A ``TrainState`` with an int32 scalar ``step`` of 0, copies of
          ``params`` and ``model_state``, ``optimizer.init(params)`` and a
          ``uint32[2]`` key.

        >>> import optax
        >>> from jaxnet import nn
        >>> _, params, _ = nn.functional(nn.MLP(2, [4], 2, rngs=0))
        >>> state = TrainState.create(params, optax.adam(1e-3))
        >>> int(state.step), state.model_state
        (0, {})
        """
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer: expected an optax GradientTransformation such as "
                            f"optax.adam(1e-3), got {type(optimizer).__name__}")
        seed = seed_int("seed", seed)
        _check_arrays("params", params)
        _check_arrays("model_state", model_state or {})
        params, model_state, opt_state = _fresh_state(params, model_state or {}, optimizer)
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                   rng=jax.random.PRNGKey(seed), model_state=model_state)


def _check_arrays(name: str, tree: Any) -> None:
    """``TypeError`` naming the first leaf of ``tree`` that is not an array or a number."""
    for path, leaf in zip(leaf_paths(tree), jax.tree.leaves(tree), strict=True):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic | float | int):
            raise TypeError(f"{name}: expected arrays, got {type(leaf).__name__} {leaf!r:.40} "
                            f"at {path}")


def _fresh_state(params, model_state, optimizer: optax.GradientTransformation) -> tuple:
    """Copies of ``params`` and ``model_state``, and ``optimizer.init(params)``.

    Copies, because the jitted steps donate the state's buffers and the
    caller's own arrays must stay usable afterwards. One compiled program:
    run op by op, the copies and the optimizer's zeros compiled a tiny
    program per leaf shape and op (15 for the MNIST MLP with Adam, 0.27 s of
    a 2-core CPU's start-up; 0.09 s so).
    """
    def fresh(params, model_state):
        copy = functools.partial(jax.tree.map, lambda a: jnp.array(a, copy=True))
        return copy(params), copy(model_state), optimizer.init(params)

    return jax.jit(fresh)(params, model_state)


def _split_batch(batch) -> tuple[Any, Any, Any]:
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[0], batch[1], None
    if isinstance(batch, tuple | list) and len(batch) == 3:
        return tuple(batch)
    raise ValueError(f"batch: expected a tuple (x, y) or (x, y, mask), got "
                     f"{type(batch).__name__}" + (f" of {len(batch)}" if hasattr(batch, "__len__")
                                                  else ""))


def _grad_step(apply: Apply, loss_fn: LossFn, optimizer, state: TrainState, x, y, mask):
    """One optimizer step in training mode; returns the new state, the loss and the grads."""
    key = jax.random.fold_in(state.rng, state.step)

    def objective(params):
        outputs, model_state = apply(params, state.model_state, x, train=True, rng=key)
        return loss_fn(outputs, y, mask=mask), model_state

    (loss, model_state), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state)
    return new_state, loss, grads


def _finite_flags(loss, grads) -> jax.Array:
    """``[loss finite, grad leaf 0 finite, ...]``: a few bools, cheap next to the matmuls."""
    return jnp.stack([jnp.isfinite(loss)] + [jnp.isfinite(g).all() for g in jax.tree.leaves(grads)])


def _named_non_finite(flags: np.ndarray, params) -> list[str]:
    """The names behind the False entries of ``_finite_flags``."""
    paths = leaf_paths(params)
    return ["loss" if j == 0 else f"grad of {paths[j - 1]}" for j in np.flatnonzero(~flags)]


def make_train_step(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    check_finite: bool = False, donate: bool = True):
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
    >>> apply, params, model_state = nn.functional(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> step = make_train_step(apply, losses.cross_entropy, optax.sgd(0.1), check_finite=True)
    >>> state, metrics = step(state, (jnp.ones((8, 2)), jnp.array([0, 1] * 4)))
    >>> int(state.step), metrics["loss"].shape, bool(metrics["finite"].all())
    (1, (), True)
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

    Args:
      apply: pure model function ``apply(params, model_state, x, *, train, rng)``.
      loss_fn: ``loss_fn(outputs, labels, *, mask) -> scalar``.
      optimizer: any optax ``GradientTransformation``.
      donate: donate the input state's buffers (as for ``make_train_step``).

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
    >>> apply, params, model_state = nn.functional(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> run_epoch = make_epoch(apply, losses.cross_entropy, optax.sgd(0.1))
    >>> data = (jnp.ones((8, 2)), jnp.array([0, 1] * 4))
    >>> indices = jnp.arange(8, dtype=jnp.int32).reshape(2, 4)
    >>> state, metrics = run_epoch(state, data, indices, jnp.ones((2, 4), bool))
    >>> int(state.step), metrics["loss"].shape
    (2, (2,))
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


def _pair(arrays: tuple, name: str) -> tuple:
    if len(arrays) != 2:
        raise ValueError(f"{name}: expected examples (x, y), got {len(arrays)} arrays per example")
    return arrays


def make_epoch_runner(apply: Apply, loss_fn: LossFn, optimizer: optax.GradientTransformation,
                      loader: DataLoader, *, mesh=None):
    """One training epoch over ``loader``, the fastest way its dataset allows.

    An ``ArrayDataset`` runs as one compiled ``lax.scan`` over device-resident
    arrays (``make_epoch``); any other dataset is fetched batch by batch
    (``loader.iter_epoch(epoch, pad_last=True)``) into the jitted
    ``make_train_step``. Both see the same batches in the same order, so the
    results agree.

    With ``mesh`` (``parallel.make_mesh()``) the state is replicated over its
    devices and every batch is split over them (``loader.batch_size`` must be
    a multiple of the device count); the arrays of the scan path are
    replicated on every device and only the batch indices are split, so each
    device gathers its own rows.

    Args:
      apply: pure model function ``apply(params, model_state, x, *, train, rng)``.
      loss_fn: ``loss_fn(outputs, labels, *, mask) -> scalar``.
      optimizer: any optax ``GradientTransformation``.
      loader: a ``DataLoader`` of ``(x, y)`` examples.
      mesh: optional ``jax.sharding.Mesh`` for data-parallel training.

    Returns:
      ``run(state, epoch, on_batch=None) -> (state, losses, counts)``:
      ``epoch`` counts from 0; ``losses`` and ``counts`` are numpy arrays of
      the per-batch mean loss and number of real examples;
      ``on_batch(i, loss)`` is called after each step of the Python loop.
      ``run.compile_seconds`` is set after the first call (0 for the loop).

    >>> import optax
    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.functional(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> loader = DataLoader(ArrayDataset(np.ones((8, 2), np.float32), np.array([0, 1] * 4)),
    ...                     batch_size=4)
    >>> run = make_epoch_runner(apply, losses.cross_entropy, optax.sgd(0.1), loader)
    >>> state, batch_losses, counts = run(state, 0)
    >>> int(state.step), batch_losses.shape, counts.tolist()
    (2, (2,), [4, 4])
    """
    if mesh is not None:
        parallel.check_batch_size(loader.batch_size, mesh)
    arrays = loader.arrays
    if arrays is not None:
        epoch_fn = make_epoch(apply, loss_fn, optimizer)
        device_data: list = []
        compiled: list = []

        def run(state, epoch, on_batch=None):
            indices, mask = loader.index_batches(epoch)
            counts = mask.sum(axis=1)
            if mesh is not None:
                state = parallel.replicate(state, mesh)
                indices, mask = parallel.shard_batch((indices, mask), mesh, axis=1)
            if not compiled:
                t0 = time.perf_counter()
                device_data.extend(jax.device_put(a) if mesh is None else
                                   parallel.replicate(a, mesh)
                                   for a in _pair(arrays, "train_data"))
                compiled.append(epoch_fn.lower(state, tuple(device_data), indices, mask)
                                .compile())
                run.compile_seconds = time.perf_counter() - t0
            state, metrics = compiled[0](state, tuple(device_data), indices, mask)
            return state, np.asarray(metrics["loss"]), counts
    else:
        step = make_train_step(apply, loss_fn, optimizer)

        def run(state, epoch, on_batch=None):
            losses, counts = [], loader.index_batches(epoch)[1].sum(axis=1)
            if mesh is None:
                batches = loader.iter_epoch(epoch, pad_last=True)
            else:
                state = parallel.replicate(state, mesh)
                batches = parallel.iter_epoch(loader, epoch, mesh)
            for i, batch in enumerate(batches):
                if len(batch) != 3:
                    raise ValueError(f"train_data: expected dataset examples (x, y), got "
                                     f"batches of {len(batch) - 1} values")
                state, metrics = step(state, batch)
                losses.append(metrics["loss"])
                if on_batch is not None:
                    on_batch(i, metrics["loss"])
            return state, np.asarray(jnp.stack(losses)), counts

    run.compile_seconds = 0.0
    return run


# ---------------------------------------------------------------------------- evaluation

def _batch_sums(apply, loss_fn, params, model_state, x, y, mask):
    """Per-batch sums in evaluation mode: loss (if loss_fn), correct (if classes), count."""
    out, _ = apply(params, model_state, x, train=False)
    mf = mask.astype(jnp.float32)
    sums = {"count": jnp.sum(mf)}
    if loss_fn is not None:
        sums["loss"] = loss_fn(out, y, mask=mf, reduction="sum")
    if out.ndim == y.ndim + 1:  # class scores vs integer labels
        sums["accuracy"] = jnp.sum((jnp.argmax(out, -1) == y) * mf)
    return sums


def _eval_scan(apply, loss_fn, params, model_state, data, indices, mask):
    """The batch sums of every padded batch, added up in one scan over device arrays."""
    x_all, y_all = data

    def body(totals, batch):
        idx, m = batch
        sums = _batch_sums(apply, loss_fn, params, model_state, jnp.take(x_all, idx, axis=0),
                           jnp.take(y_all, idx, axis=0), m)
        return jax.tree.map(jnp.add, totals, sums), None

    first = _batch_sums(apply, loss_fn, params, model_state, jnp.take(x_all, indices[0], axis=0),
                        jnp.take(y_all, indices[0], axis=0), mask[0])
    totals, _ = jax.lax.scan(body, first, (indices[1:], mask[1:]))
    return totals


_eval_scan_jit = jax.jit(_eval_scan, static_argnums=(0, 1))
_batch_sums_jit = jax.jit(_batch_sums, static_argnums=(0, 1))


def _as_loader(data, name: str, *, batch_size=None, shuffle=None, seed=None,
               defaults=(64, True, 0), round_to: int = 1) -> DataLoader:
    """A DataLoader for ``data``: ``(x, y)`` arrays, a dataset, or a DataLoader as is.

    ``round_to``: a batch size that this function chooses (not one given) is
    rounded up to a multiple of it (the devices of a mesh; padding is masked).
    """
    given = {k: v for k, v in (("batch_size", batch_size), ("shuffle", shuffle), ("seed", seed))
             if v is not None}
    if isinstance(data, DataLoader):
        if given:
            raise ValueError(f"{', '.join(given)}: {name} is a DataLoader, which already sets "
                             f"them (DataLoader(dataset, batch_size=..., shuffle=..., seed=...)); "
                             f"pass them to the DataLoader, not here")
        return data
    if isinstance(data, tuple | list):
        if len(data) != 2:
            raise TypeError(f"{name}: expected (x, y) arrays, a Dataset or a DataLoader, got a "
                            f"{type(data).__name__} of {len(data)}")
        data = ArrayDataset(*data)
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(f"{name}: expected (x, y) arrays, a Dataset or a DataLoader, got "
                        f"{type(data).__name__}")
    b, s, sd = defaults
    b = min(given.get("batch_size", b), len(data))
    if "batch_size" not in given:
        b = -(-b // round_to) * round_to
    return DataLoader(data, batch_size=b, shuffle=given.get("shuffle", s),
                      seed=given.get("seed", sd))


def evaluate(apply: Apply, params: Any, data, *, model_state: Any = None,
             loss_fn: LossFn | None = None, batch_size: int = 1000,
             mesh=None) -> dict[str, float]:
    """Loss and accuracy over a dataset in evaluation mode, without gradients.

    PyTorch's ``model.eval()`` + ``with torch.no_grad():`` loop: Dropout is off,
    BatchNorm uses its running statistics, nothing is differentiated.

    Args:
      apply: pure model function (``nn.functional(model).apply``).
      params: model parameters, or a ``TrainState`` (then its ``params`` and
        ``model_state`` are used).
      data: ``(x, y)`` arrays, a ``Dataset`` or a ``DataLoader`` (its order,
        batch size and ``drop_last`` are used; a partial last batch is padded
        and masked, never dropped otherwise).
      model_state: the model's non-parameter state (BatchNorm statistics).
      loss_fn: optional loss (``reduction=`` and ``mask=`` keywords); its mean
        is returned as ``"loss"``.
      batch_size: examples per forward pass for arrays (memory, not results);
        with ``mesh``, rounded up to a multiple of its device count.
      mesh: evaluate on every device of a ``parallel.make_mesh()`` mesh, each
        device a slice of every batch.

    Returns:
      ``{"accuracy": float}`` for class scores vs integer labels, plus
      ``"loss"`` when ``loss_fn`` is given.

    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.functional(nn.MLP(2, [4], 2, rngs=0))
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> metrics = evaluate(apply, params, data, model_state=model_state,
    ...                    loss_fn=losses.cross_entropy)
    >>> sorted(metrics), metrics["accuracy"]
    (['accuracy', 'loss'], 0.5)
    """
    if isinstance(params, TrainState):
        params, model_state = params.params, params.model_state
    model_state = {} if model_state is None else model_state
    loader = _as_loader(data, "data", defaults=(positive_int("batch_size", batch_size), False, 0),
                        round_to=1 if mesh is None else mesh.size)
    indices, mask = loader.index_batches(0)
    arrays = loader.arrays
    if mesh is not None:
        params, model_state = parallel.replicate((params, model_state), mesh)
        indices, mask = parallel.shard_batch((indices, mask), mesh, axis=1)
    if arrays is not None:
        x, y = _pair(arrays, "data")
        data = ((jnp.asarray(x), jnp.asarray(y)) if mesh is None
                else parallel.replicate((x, y), mesh))
        totals = _eval_scan_jit(apply, loss_fn, params, model_state, data, indices, mask)
    else:
        totals = None
        batches = (loader.iter_epoch(0, pad_last=True) if mesh is None
                   else parallel.iter_epoch(loader, 0, mesh))
        for x, y, m in batches:
            sums = _batch_sums_jit(apply, loss_fn, params, model_state, x, y, m)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = dict(totals)
    count = totals.pop("count")
    return {k: float(v / count) for k, v in totals.items()}


# ---------------------------------------------------------------------------- fit

def _check_same_config(saved: dict | None, config: dict | None, directory) -> None:
    """A run resumes only with the configuration it started with; ``epochs`` may grow.

    Anything that depends on the number of epochs (a schedule's length) must
    be in ``config`` under its own key, so that growing ``epochs`` changes it
    and the resume is refused rather than silently different.
    """
    if saved is None or config is None:
        return
    keys = sorted(set(saved) | set(config))
    diff = {k: (saved.get(k), config.get(k)) for k in keys
            if k != "epochs" and saved.get(k) != config.get(k)}
    if diff:
        why = (" (the learning-rate schedule's length follows epochs: a run with a schedule "
               "cannot grow, one with a constant rate can)" if "schedule_steps" in diff else "")
        raise ValueError(
            f"resume: {directory} was written by a run with another configuration: "
            + ", ".join(f"{k} {a!r} (checkpoint) vs {b!r} (now)" for k, (a, b) in diff.items())
            + why + "; resume with the settings it was started with, or train a new run in an "
              "empty folder")


def _resume(checkpoint_dir, state, config, log) -> tuple[TrainState, int, list[dict]]:
    from . import checkpoint

    try:  # refuse another configuration before announcing the resume
        newest = checkpoint.load_metadata(checkpoint_dir).get("config")
    except checkpoint.CheckpointError:
        newest = None  # none, or damaged: resume_state falls back and says so
    _check_same_config(newest, config, checkpoint_dir)
    state, start_epoch, history, saved = checkpoint.resume_state(checkpoint_dir, state, log=log)
    _check_same_config(saved, config, checkpoint_dir)
    return state, start_epoch, history


def _default_callbacks(check_finite, checkpoint_dir, keep, progress, log) -> list:
    out: list[cb.Callback] = []
    if check_finite:
        out.append(cb.FiniteCheck())  # before Checkpoint: a poisoned state is never saved
    if checkpoint_dir is not None:
        out.append(cb.Checkpoint(checkpoint_dir, keep=keep))
    if progress:
        out.append(cb.ProgressBar())
    if log is not None:
        out.append(cb.EpochLog(log))
    return out


def _run_epoch(runner, run: cb.Run, callbacks, state, epoch: int, val_loader, mesh) -> tuple:
    """Train one epoch (``epoch`` counts from 1), validate, and build its history entry."""
    t0 = time.perf_counter()
    for c in callbacks:
        c.on_epoch_begin(run, epoch, state)

    def on_batch(i, loss):
        for c in callbacks:
            c.on_batch_end(run, i, loss)

    compiled_before = runner.compile_seconds
    state, losses, counts = runner(state, epoch - 1, on_batch)
    logs: dict[str, Any] = {"epoch": epoch}
    if runner.compile_seconds != compiled_before:
        logs["compile_seconds"] = runner.compile_seconds
    logs["train_seconds"] = time.perf_counter() - t0 - logs.get("compile_seconds", 0.0)
    logs["train_loss"] = float(np.sum(losses * counts) / np.sum(counts))
    if val_loader is not None:
        val = evaluate(run.apply, state, val_loader, loss_fn=run.loss_fn, mesh=mesh)
        logs.update({f"val_{k}": v for k, v in val.items()})
    logs["seconds"] = time.perf_counter() - t0
    return state, logs


def fit(state: TrainState, apply: Apply, loss_fn: LossFn,
        optimizer: optax.GradientTransformation, train_data, *, epochs: int,
        batch_size: int | None = None, shuffle: bool | None = None, seed: int | None = None,
        val_data=None, callbacks: Iterable[cb.Callback] = (), check_finite: bool = True,
        checkpoint_dir=None, keep: int = 3, resume: bool = False, config: dict | None = None,
        progress: bool = True, log: Callable[[str], Any] | None = print, mesh=None,
        ) -> tuple[TrainState, list[dict]]:
    """Train for ``epochs`` epochs; return the final state and the per-epoch history.

    The loop: (resume) → for each epoch: callbacks' ``on_epoch_begin`` → one
    epoch (``make_epoch_runner``) → validation (``evaluate``) → callbacks'
    ``on_epoch_end`` (any may stop training) → ``on_train_end``.

    Args:
      state: initial ``TrainState`` (also the template when resuming).
      apply, loss_fn, optimizer: as for ``make_train_step``.
      train_data: ``(x, y)`` arrays, a ``Dataset`` or a ``DataLoader``.
      epochs: total number of epochs (a resumed run continues up to it).
      batch_size, shuffle, seed: batching when ``train_data`` is not a
        ``DataLoader`` (defaults 64, True, 0); passing them with a
        ``DataLoader`` is an error. The order of epoch ``e`` depends only on
        ``(seed, e)``.
      val_data: optional data (like ``train_data``) evaluated after every
        epoch; its metrics appear as ``val_loss``/``val_accuracy``.
      callbacks: your ``Callback`` objects, run after the built-in ones.
      check_finite: stop with ``NonFiniteError`` naming the epoch, step and
        parameter of a NaN/Inf (the ``FiniteCheck`` callback).
      checkpoint_dir: save the state after every epoch there (keep the last
        ``keep``; the ``Checkpoint`` callback); the folder is locked for the
        run. With ``resume=True`` continue from its newest intact checkpoint.
      config: JSON-able run configuration stored with each checkpoint; a
        resume with a different one (other than more ``epochs``) is refused.
      progress: show a tqdm progress bar (the ``ProgressBar`` callback).
      log: called with one line per epoch (the ``EpochLog`` callback; ``None``
        for silence).
      mesh: train data parallel on a ``parallel.make_mesh()`` mesh: the state
        replicated, every batch split over the devices (``batch_size`` must
        be a multiple of their number), the same steps. In a multi-process
        run only process 0 checkpoints, resumes, logs and shows progress; the
        others start from its state.

    Returns:
      ``(state, history)``; ``history[i]`` has ``epoch``, ``train_loss``,
      ``train_seconds`` (training only), ``seconds`` (with validation),
      ``run`` (0 for the first process, +1 per resume), ``compile_seconds``
      on an epoch that compiled, and the ``val_*`` metrics.

    >>> import optax
    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.functional(nn.MLP(2, [4], 2, rngs=0))
    >>> state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> state, history = fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data,
    ...                      epochs=1, batch_size=4, val_data=data, progress=False, log=None)
    >>> int(state.step), history[0]["epoch"], history[0]["val_accuracy"]
    (2, 1, 0.5)
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs: expected a non-negative int, got {epochs!r}")
    if seed is not None:
        seed_int("seed", seed)
    if batch_size is not None:
        positive_int("batch_size", batch_size)
    loader = _as_loader(train_data, "train_data", batch_size=batch_size, shuffle=shuffle,
                        seed=seed)
    val_loader = None if val_data is None else _as_loader(
        val_data, "val_data", defaults=(1000, False, 0), round_to=1 if mesh is None else mesh.size)
    if mesh is not None:
        parallel.check_batch_size(loader.batch_size, mesh)
    keep = positive_int("keep", keep)
    if not parallel.is_primary():  # one process writes and prints, like DDP's rank 0
        checkpoint_dir, progress, log = None, False, None
    callbacks = [*_default_callbacks(check_finite, checkpoint_dir, keep, progress, log),
                 *callbacks]
    with contextlib.ExitStack() as stack:
        start_epoch, history = 0, []
        if checkpoint_dir is not None:
            from . import checkpoint

            stack.enter_context(checkpoint.lock(checkpoint_dir, log=log))
            checkpoint.check_new_run(checkpoint_dir, resume=resume)
            if resume:
                state, start_epoch, history = _resume(checkpoint_dir, state, config,
                                                      log or (lambda _: None))
        if mesh is not None:
            state, start_epoch, history = parallel.start_from_primary(mesh, state, start_epoch,
                                                                      history)
        run_index = 1 + max((e.get("run", 0) for e in history), default=-1)
        run = cb.Run(apply, loss_fn, optimizer, loader, epochs, start_epoch, history, config)
        runner = make_epoch_runner(apply, loss_fn, optimizer, loader, mesh=mesh)
        started: list[cb.Callback] = []
        try:
            for c in callbacks:
                c.on_train_begin(run)
                started.append(c)
            for epoch in range(start_epoch + 1, epochs + 1):
                state, logs = _run_epoch(runner, run, callbacks, state, epoch, val_loader, mesh)
                logs["run"] = run_index
                history.append(logs)
                stop = [c.on_epoch_end(run, epoch, state, logs) for c in callbacks]
                if any(stop):
                    break
        finally:
            for c in started:
                c.on_train_end(run, state)
    return state, history
