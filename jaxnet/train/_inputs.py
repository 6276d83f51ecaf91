"""What enters ``fit`` and ``evaluate``, checked once on the host before anything compiles.

Under ``jit`` a bad value cannot raise, and a wrong one trains silently: a
label ``-1`` picks the last class, an int64 label ``2**32 + 1`` becomes class
1 in JAX's int32. So the labels are checked here, on the host, where they
enter: an array dataset's whole label array once per call (never per epoch),
a per-item dataset's batches as they are fetched (``LabelChecked``). Class
labels are recognised by shape: the model's output ``(N, ..., C)`` and labels
``(N, ...)``; ``C`` comes from ``jax.eval_shape`` of one batch (no compute).
Anything else (regression targets shaped like the output) is the loss's to judge.

The wrong optimizer and the model passed where ``apply`` belongs are refused
here too, naming the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx

from .._checks import class_labels
from ._batches import Batches


def check_apply(apply: Any) -> None:
    """``TypeError`` for a model (or anything not callable) where ``apply`` belongs.

    >>> from jaxnet import nn
    >>> check_apply(nn.Linear(2, 1, rngs=nn.Rngs(0)))
    Traceback (most recent call last):
    ...
    TypeError: apply: expected the pure function of nn.split(model), got the model Linear \
itself; write apply, params, model_state = nn.split(model)
    """
    if isinstance(apply, nnx.Module):
        raise TypeError(f"apply: expected the pure function of nn.split(model), got the model "
                        f"{type(apply).__name__} itself; write apply, params, model_state = "
                        f"nn.split(model)")
    if not callable(apply):
        raise TypeError(f"apply: expected the pure function of nn.split(model), got "
                        f"{type(apply).__name__}")


def check_not_empty(data: Any, name: str) -> None:
    """``ValueError`` for ``(x, y)`` arrays or a dataset with no examples."""
    n = None
    if isinstance(data, tuple | list) and len(data) == 2 and hasattr(data[0], "__len__"):
        n = len(data[0])
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(
            data, tuple | list):
        n = len(data)
    if n == 0:
        raise ValueError(f"{name}: expected at least one example, got an empty dataset")


def _describe(tree: Any) -> str:
    """``(ScaleByAdamState, EmptyState)``: an optax state by the types of its parts."""
    if isinstance(tree, tuple) and not hasattr(tree, "_fields"):
        return "(" + ", ".join(_describe(t) for t in tree) + ")"
    return type(tree).__name__


def check_optimizer(state: Any, optimizer: Any) -> None:
    """``TypeError`` if ``optimizer``'s state would not have ``state.opt_state``'s structure.

    ``TrainState.create(params, optax.sgd(...))`` then ``fit(..., optax.adam(...))``
    would otherwise fail deep inside optax (``'EmptyState' object has no
    attribute 'mu'``). Same family, other hyperparameters (another learning
    rate) is fine. ``jax.eval_shape``: nothing is allocated.
    """
    if not (hasattr(state, "opt_state") and hasattr(state, "params")):
        return
    want = jax.eval_shape(optimizer.init, state.params)
    if jax.tree.structure(want) == jax.tree.structure(state.opt_state):
        return
    have, give = _describe(state.opt_state), _describe(want)
    if have == give:  # same types, other leaves: show the structures themselves
        have, give = (f"{jax.tree.structure(t)}"[:120] for t in (state.opt_state, want))
    raise TypeError(f"optimizer: expected one of the family the state was created with (its "
                    f"opt_state is {have}), got one whose state is {give}; create the state "
                    f"with this optimizer: TrainState.create(params, optimizer, "
                    f"model_state=model_state)")


def _output_shape(apply, params, model_state, x, train: bool, rng, n=None) -> tuple | None:
    """The shape of ``apply``'s output for a batch like ``x`` (of ``n`` rows), by ``eval_shape``."""
    shape = np.shape(x) if n is None else (n, *np.shape(x)[1:])
    spec = jax.ShapeDtypeStruct(shape, getattr(x, "dtype", None) or np.asarray(x).dtype)

    def output(p, s, x):
        kwargs = {"train": True, "rng": rng} if train else {"train": False}
        return apply(p, s, x, **kwargs)[0]

    out = jax.eval_shape(output, params, model_state, spec)
    return tuple(out.shape) if isinstance(out, jax.ShapeDtypeStruct) else None


@dataclass
class _Model:
    """How to learn the model's output shape: ``apply`` and its arguments."""

    apply: Any
    params: Any
    model_state: Any
    train: bool = False
    rng: Any = None

    def output_shape(self, x, n=None) -> tuple | None:
        return _output_shape(self.apply, self.params, self.model_state, x, self.train, self.rng,
                             n)


_RANGE_FIX = ("each label must pick one of the model's outputs (PyTorch raises 'Target is out "
              "of bounds'; there is no ignore_index): correct the labels, or give the last "
              "layer one output per class")


def _check(where: str, y, out_shape: tuple | None, rows=None, *, evaluating: bool,
           loss_fn: Any = None) -> None:
    """The label checks for labels ``y`` (a batch, or a whole dataset) and the model's output."""
    if out_shape is None:
        return
    y_shape = np.shape(y)
    classes = len(out_shape) == len(y_shape) + 1 and out_shape[1:-1] == y_shape[1:]
    if classes:
        num = out_shape[-1]
        if evaluating and num < 2:
            raise ValueError(f"apply: the model has 1 output (scores of shape {out_shape}); "
                             f"evaluate's accuracy needs scores for 2 or more classes: give the "
                             f"model one output per class (with losses.cross_entropy), or for a "
                             f"binary model compute accuracy yourself: metrics.accuracy(y, "
                             f"(out[..., 0] > 0).astype(jnp.int32))")
        y = np.asarray(y) if rows is None else np.asarray(y)[rows[1]]
        class_labels(where, y, num, classes=f"the model's {num} output{'s' * (num != 1)}",
                     rows=None if rows is None else rows[0], fix=_RANGE_FIX)
    elif evaluating and loss_fn is None:
        dtype = getattr(y, "dtype", None) or np.asarray(y).dtype
        raise ValueError(f"{where}: labels: expected class indices of shape "
                         f"{(y_shape[0],) + tuple(out_shape[1:-1])}, got {dtype} of shape "
                         f"{y_shape} (the model's output shape {out_shape}), which gives no "
                         f"accuracy; for one-hot labels pass labels.argmax(-1), for regression "
                         f"targets pass loss_fn (e.g. losses.mse_loss)" if y_shape[1:] ==
                         out_shape[1:] else
                         f"{where}: labels: expected class indices of shape "
                         f"{(y_shape[0],) + tuple(out_shape[1:-1])} for the model's output "
                         f"shape {out_shape}, got shape {y_shape}, which gives no accuracy; "
                         f"pass labels.reshape({y_shape[0]}) if they are class indices, or "
                         f"loss_fn to evaluate a loss")


@dataclass(frozen=True)
class LabelChecked(Batches):
    """``Batches`` whose labels are checked on the host before the device sees them.

    An array dataset's labels are checked once, when this is built
    (``label_checked``); a per-item dataset's batches as ``host_batches``
    fetches them (masked-in rows only; the index named is the dataset's).
    """

    model: Any = None
    evaluating: bool = False
    loss_fn: Any = None

    def host_batches(self, epoch: int) -> Iterator[tuple]:
        indices, mask = self.loader.index_batches(epoch)
        if self.mesh is not None:  # a dataset smaller than the batch: padded to the devices
            pad = ((0, 0), (0, -indices.shape[1] % self.mesh.size))
            indices, mask = np.pad(indices, pad), np.pad(mask, pad)
        out_shape = None
        for b, batch in enumerate(super().host_batches(epoch)):
            x, y, m = batch
            if b == 0:
                out_shape = self.model.output_shape(x)
            if not isinstance(y, jax.Array) or y.is_fully_addressable:
                keep = np.asarray(m) if np.shape(m) == np.shape(mask[b]) else mask[b]
                _check(self.name, y, out_shape, (indices[b][keep], keep),
                       evaluating=self.evaluating, loss_fn=self.loss_fn)
            yield batch


def label_checked(batches: Batches, apply, params, model_state, *, train: bool = False,
                  rng=None, loss_fn=None) -> Batches:
    """``batches`` with their labels checked against the model (see the module docstring).

    Args:
      batches: the ``Batches`` of ``fit`` (``train=True``) or ``evaluate``.
      apply, params, model_state: the model, to learn its output shape.
      train, rng: how the model is called (``fit``: ``train=True`` and the state's key).
      loss_fn: ``evaluate``'s; without one, labels that give no accuracy are refused.

    Returns:
      ``batches`` itself for an array dataset (its labels checked now, once),
      else a ``LabelChecked`` that checks each fetched batch.
    """
    model = _Model(apply, params, model_state, train, rng)
    evaluating = not train
    arrays = batches.loader.arrays
    if arrays is not None and len(arrays) == 2:
        x, y = arrays
        b = min(batches.loader.batch_size, len(x))
        out_shape = model.output_shape(x, b)
        if out_shape is not None:
            out_shape = (len(x),) + out_shape[1:]
        _check(batches.name, y, out_shape, evaluating=evaluating, loss_fn=loss_fn)
        return batches
    return LabelChecked(batches.loader, batches.mesh, batches.name, model, evaluating, loss_fn)
