"""``evaluate``: loss and accuracy in evaluation mode, without gradients, over any data."""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

import jax
import jax.numpy as jnp

from .. import metrics
from .._checks import positive_int
from ..nn._functional import check_live
from ._batches import Batches, as_loader
from ._precision import cast_for_compute, cast_outputs, check_precision
from ._state import TrainState
from ._step import Apply, LossFn


def _batch_sums(apply, loss_fn, precision, params, model_state, x, y, mask):
    """Per-batch sums in evaluation mode: loss (if loss_fn), correct (if classes), count."""
    # nothing is updated in evaluation: the statistics compute in the policy's dtype too
    params, model_state, x = cast_for_compute((params, model_state, x), precision)
    out, _ = apply(params, model_state, x, train=False)
    out = cast_outputs(out, precision)
    mf = mask.astype(jnp.float32)
    sums = {"count": jnp.sum(mf)}
    if loss_fn is not None:
        sums["loss"] = loss_fn(out, y, mask=mf, reduction="sum")
    if out.ndim == y.ndim + 1:  # class scores vs integer labels
        # metrics.accuracy of each example alone is 1.0 or 0.0: summed, exact in float32
        sums["accuracy"] = jnp.sum(jax.vmap(metrics.accuracy)(y, out) * mf)
    return sums


def _eval_scan(apply, loss_fn, precision, params, model_state, data, indices, mask):
    """The batch sums of every padded batch, added up in one scan over device arrays."""
    x_all, y_all = data

    def body(totals, batch):
        idx, m = batch
        sums = _batch_sums(apply, loss_fn, precision, params, model_state,
                           jnp.take(x_all, idx, axis=0), jnp.take(y_all, idx, axis=0), m)
        return jax.tree.map(jnp.add, totals, sums), None

    first = _batch_sums(apply, loss_fn, precision, params, model_state,
                        jnp.take(x_all, indices[0], axis=0), jnp.take(y_all, indices[0], axis=0),
                        mask[0])
    totals, _ = jax.lax.scan(body, first, (indices[1:], mask[1:]))
    return totals


_SAFE_VALUES = (int, float, complex, bool, str, bytes, type(None))


def _stable_key(fn) -> Any:
    """A key under which ``fn`` computes the same thing as every other ``fn`` with that key.

    As ``jax.jit``'s static arguments: a hashable object by its ``==`` (a function or
    ``nn.split``'s ``apply`` by identity, an ``nn.CrossEntropyLoss()`` by its settings). In
    addition a ``functools.partial`` of such a function with literal arguments (numbers,
    strings, tuples of them, typed so that ``1``, ``1.0`` and ``True`` differ) is keyed by
    its contents, so ``partial(loss, label_smoothing=0.1)`` built afresh for each call
    compiles once. A fresh lambda is never assumed equal to another (it may read other
    globals): it compiles again, and only the last few variants are kept.
    """
    def value(v):
        if type(v) in _SAFE_VALUES:
            return (type(v), v)
        if type(v) is tuple:
            return (tuple, tuple(value(i) for i in v))
        raise TypeError

    if type(fn) is functools.partial:
        try:
            return ("partial", _stable_key(fn.func), value(fn.args),
                    tuple(sorted((k, value(v)) for k, v in fn.keywords.items())))
        except TypeError:
            pass
    try:
        hash(fn)
    except TypeError:  # held by its cache entry, so the id stays its own
        return ("id", id(fn))
    return (type(fn), fn)


class _Variants:
    """``jax.jit(partial(fn, *static))`` for the last ``size`` distinct static callables.

    ``jax.jit(fn, static_argnums=...)`` at module level keeps a compiled variant for
    every function object ever passed, forever (a fresh ``partial`` or lambda per call
    leaked ~3.5 MiB and a recompile each); this keeps ``size`` and lets the rest go.

    >>> square = _Variants(lambda f, x: f(x) ** 2, size=2)
    >>> [float(square(abs)(-3.0)), float(square(abs)(2.0)), len(square)]
    [9.0, 4.0, 1]
    """

    def __init__(self, fn, size: int = 8):
        self._fn, self._size = fn, size
        self._cache: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def __call__(self, *static):
        key = tuple(_stable_key(f) for f in static)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][0]
        # the static objects are held with their program: an id in a key stays theirs
        jitted = jax.jit(functools.partial(self._fn, *static))
        self._cache[key] = (jitted, static)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return jitted


_eval_scan_jit = _Variants(_eval_scan)
_batch_sums_jit = _Variants(_batch_sums)


def evaluate(apply: Apply, params: Any, data, *, model_state: Any = None,
             loss_fn: LossFn | None = None, batch_size: int = 1000,
             mesh=None, precision: str = "float32") -> dict[str, float]:
    """Loss and accuracy over a dataset in evaluation mode, without gradients.

    PyTorch's ``model.eval()`` + ``with torch.no_grad():`` loop: Dropout is off,
    BatchNorm uses its running statistics, nothing is differentiated.

    Args:
      apply: pure model function (``nn.split(model).apply``).
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
      precision: ``"float32"`` (default) or ``"bf16"`` (also ``"bfloat16"``):
        the forward pass in bfloat16 (parameters, BatchNorm statistics and
        float inputs cast), the loss and the sums in float32; ``fit`` passes
        its own to its validation.

    Returns:
      ``{"accuracy": float}`` for class scores vs integer labels, plus
      ``"loss"`` when ``loss_fn`` is given.

    >>> import numpy as np
    >>> from jaxnet import nn, losses
    >>> apply, params, model_state = nn.split(nn.MLP(2, [4], 2, rngs=0))
    >>> data = (np.ones((8, 2), np.float32), np.array([0, 1] * 4))
    >>> metrics = evaluate(apply, params, data, model_state=model_state,
    ...                    loss_fn=losses.cross_entropy)
    >>> sorted(metrics), metrics["accuracy"]
    (['accuracy', 'loss'], 0.5)
    """
    if isinstance(params, TrainState):
        params, model_state = params.params, params.model_state
    model_state = {} if model_state is None else model_state
    check_live((params, model_state), "state", "state, metrics = step(state, batch)")
    precision = check_precision(precision)
    from ._inputs import check_apply, check_not_empty, label_checked  # labels: on the host

    check_apply(apply)
    check_not_empty(data, "data")
    loader = as_loader(data, "data", defaults=(positive_int("batch_size", batch_size), False, 0),
                       round_to=1 if mesh is None else mesh.size)
    batches = label_checked(Batches(loader, mesh, name="data"), apply, params, model_state,
                            loss_fn=loss_fn)
    params, model_state = batches.place((params, model_state))
    if batches.on_device:
        indices, mask, _ = batches.index_batches(0)
        totals = _eval_scan_jit(apply, loss_fn, precision)(params, model_state, batches.arrays(),
                                                           indices, mask)
    else:
        totals = None
        for x, y, m in batches.host_batches(0):
            sums = _batch_sums_jit(apply, loss_fn, precision)(params, model_state, x, y, m)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = dict(totals)
    count = totals.pop("count")
    return {k: float(v) / float(count) for k, v in totals.items()}
