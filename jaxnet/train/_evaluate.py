"""``evaluate``: loss and accuracy in evaluation mode, without gradients, over any data."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .. import metrics
from .._checks import positive_int
from ..nn._functional import check_live
from ._batches import Batches, as_loader
from ._state import TrainState
from ._step import Apply, LossFn


def _batch_sums(apply, loss_fn, params, model_state, x, y, mask):
    """Per-batch sums in evaluation mode: loss (if loss_fn), correct (if classes), count."""
    out, _ = apply(params, model_state, x, train=False)
    mf = mask.astype(jnp.float32)
    sums = {"count": jnp.sum(mf)}
    if loss_fn is not None:
        sums["loss"] = loss_fn(out, y, mask=mf, reduction="sum")
    if out.ndim == y.ndim + 1:  # class scores vs integer labels
        # metrics.accuracy of each example alone is 1.0 or 0.0: summed, exact in float32
        sums["accuracy"] = jnp.sum(jax.vmap(metrics.accuracy)(y, out) * mf)
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


def evaluate(apply: Apply, params: Any, data, *, model_state: Any = None,
             loss_fn: LossFn | None = None, batch_size: int = 1000,
             mesh=None) -> dict[str, float]:
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
        totals = _eval_scan_jit(apply, loss_fn, params, model_state, batches.arrays(), indices,
                                mask)
    else:
        totals = None
        for x, y, m in batches.host_batches(0):
            sums = _batch_sums_jit(apply, loss_fn, params, model_state, x, y, m)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = dict(totals)
    count = totals.pop("count")
    return {k: float(v) / float(count) for k, v in totals.items()}
