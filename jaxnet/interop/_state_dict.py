"""PyTorch state dicts in and out of jaxnet models: keys matched, values converted and checked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import nn
from ..nn._functional import check_fresh
from ._keys import _COUNTER, _check_unique, _dict_entries, _module_entries


class StateDictMismatchError(ValueError):
    """A state dict does not fit a model; lists every missing, unexpected and mis-shaped key.

    Attributes:
      missing: PyTorch keys the model needs that the state dict lacks.
      unexpected: keys of the state dict the model does not have.
      mismatched: ``(key, expected_shape, given_shape)`` for keys of the wrong shape.
      not_arrays: ``(key, type name)`` for values that are not arrays.
    """

    def __init__(self, message: str, *, missing=(), unexpected=(), mismatched=(),
                 not_arrays=()):
        super().__init__(message)
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.mismatched, self.not_arrays = list(mismatched), list(not_arrays)


StateDictMismatchError.__module__ = "jaxnet.interop"


# ---------------------------------------------------------------------------- values

def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _to_numpy(value: Any) -> np.ndarray | None:
    """A numpy array of ``value`` (torch tensor, numpy/JAX array, number), or ``None``."""
    if _is_torch_tensor(value):
        import torch

        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            t = t.to(torch.float32)
        try:
            return t.numpy()
        except (TypeError, RuntimeError):  # a dtype numpy lacks (float8, quantized...)
            return None
    if isinstance(value, np.ndarray | jax.Array | np.generic | int | float) \
            and not isinstance(value, bool):
        out = np.asarray(value)
        if out.dtype.name == "bfloat16":  # JAX's (ml_dtypes); float32 holds it exactly
            out = out.astype(np.float32)
        return out if out.dtype.kind in "biufc" else None
    return None


def _fresh(array: np.ndarray) -> np.ndarray:
    """A contiguous, writable copy (for torch.from_numpy and safetensors)."""
    return np.array(array, copy=True, order="C")


def _is_train_state(value: Any) -> bool:
    """A ``jaxnet.train.TrainState`` (known by its fields: interop sits below ``train``)."""
    return hasattr(value, "params") and hasattr(value, "opt_state")


def _fmt_shape(shape: tuple) -> str:
    return str(tuple(int(s) for s in shape))


def _import_torch(why: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{why} needs PyTorch: pip install 'jaxnet-course[torch]'; or use a "
                          f".safetensors file, which jaxnet reads and writes without PyTorch "
                          f"(pip install 'jaxnet-course[interop]')") from None
    return torch


def _mismatch_message(what: str, missing, unexpected, mismatched, not_arrays) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (the model has them, the state dict does not): "
                     + ", ".join(f"{k!r} {_fmt_shape(s)}" for k, s in missing))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (in the state dict, not in the model): "
                     + ", ".join(f"{k!r} {_fmt_shape(s)}" for k, s in unexpected))
    if mismatched:
        items = []
        for k, want, got in mismatched:
            hint = (" (transposed? PyTorch's Linear weight is (out_features, in_features))"
                    if len(want) == 2 and tuple(got) == tuple(want)[::-1] else "")
            items.append(f"{k!r} expected {_fmt_shape(want)}, got {_fmt_shape(got)}{hint}")
        parts.append(f"{len(mismatched)} mis-shaped: " + ", ".join(items))
    if not_arrays:
        parts.append(f"{len(not_arrays)} not arrays: "
                     + ", ".join(f"{k!r} ({t})" for k, t in not_arrays))
    message = f"state_dict does not match {what}: " + "; ".join(parts)
    # A common cause: nn.DataParallel/DistributedDataParallel save every key under `module.`.
    firsts = {k.split(".", 1)[0] for k, _ in unexpected}
    if len(firsts) == 1 and missing:
        first = firsts.pop()
        stripped = {k.split(".", 1)[-1] for k, _ in unexpected}
        if stripped & {k for k, _ in missing}:
            message += (f"; every unexpected key starts with {first + '.'!r} (as "
                        f"nn.DataParallel/DistributedDataParallel save them): pass "
                        f"{{k.removeprefix({first + '.'!r}): v for k, v in state_dict.items()}}")
    return message


def from_torch_state_dict(state_dict: Mapping[str, Any], model: nnx.Module) -> nnx.Module:
    """Load a PyTorch state dict into ``model`` (in place) and return ``model``.

    PyTorch's ``model.load_state_dict(sd)`` habit works: ``model`` itself
    holds the state dict's values afterwards, and the returned object is that
    same model, so ``model = from_torch_state_dict(sd, model)`` works too.
    Every key and shape is checked before anything changes: on an error the
    model is left as it was. Values may be torch tensors, numpy or JAX arrays,
    and are cast to the model's dtypes (as PyTorch's ``load_state_dict`` does).
    BatchNorm's ``num_batches_tracked`` is accepted and ignored. To keep the
    original weights too, load into a copy: ``from_torch_state_dict(sd,
    nnx.clone(model))``.

    Args:
      state_dict: ``{pytorch_key: tensor}``, e.g. ``torch_model.state_dict()``
        or ``jaxnet.interop.load("model.safetensors")``.
      model: a jaxnet model of the same architecture; it receives the values.

    Returns:
      ``model`` itself, now holding the state dict's values.

    Raises:
      StateDictMismatchError (a ``ValueError``): lists every missing,
      unexpected, mis-shaped and non-array key at once.

    >>> from jaxnet import nn
    >>> sd = {"0.weight": np.ones((3, 4)), "0.bias": np.zeros(3)}
    >>> model = nn.Sequential(nn.Linear(4, 3, rngs=nn.Rngs(0)))
    >>> from_torch_state_dict(sd, model) is model
    True
    >>> model[0].kernel.shape, model[0].kernel.dtype, float(model[0].kernel[...].sum())
    ((4, 3), dtype('float32'), 12.0)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected a jaxnet model (nn.Module) to load the values into, "
                        f"got {type(model).__name__}")
    if isinstance(state_dict, str | os.PathLike):
        raise TypeError(f"state_dict: expected a dict of tensors, got the path "
                        f"{os.fspath(state_dict)!r}; read it with jaxnet.interop.load(path)")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a dict of tensors such as "
                        f"torch_model.state_dict(), got {type(state_dict).__name__}")
    entries, counters = _module_entries(model)
    _check_unique(entries)
    expected = {e.key: e for e in entries}
    optional = set(counters)
    given: dict[str, np.ndarray] = {}
    not_arrays = []
    for k, v in state_dict.items():
        if not isinstance(k, str):
            not_arrays.append((repr(k), f"key of type {type(k).__name__}"))
            continue
        array = _to_numpy(v)
        if array is None and k not in optional:
            not_arrays.append((k, type(v).__name__))
        elif array is not None:
            given[k] = array
    missing = [(k, e.torch_shape) for k, e in expected.items() if k not in given
               and k not in dict(not_arrays)]
    unexpected = [(k, a.shape) for k, a in given.items() if k not in expected
                  and k not in optional]
    mismatched = [(k, e.torch_shape, given[k].shape) for k, e in expected.items()
                  if k in given and tuple(given[k].shape) != e.torch_shape]
    if missing or unexpected or mismatched or not_arrays:
        raise StateDictMismatchError(
            _mismatch_message(type(model).__name__, missing, unexpected, mismatched,
                              not_arrays),
            missing=[k for k, _ in missing], unexpected=[k for k, _ in unexpected],
            mismatched=mismatched, not_arrays=not_arrays)
    values: dict = {}
    for e in entries:
        array = given[e.key].T if e.transpose else given[e.key]
        node = values
        for k in e.path[:-1]:
            node = node.setdefault(k, {})
        node[e.path[-1]] = jnp.asarray(array, dtype=e.dtype)
    nn.load_state_dict(model, values)  # in place, as PyTorch's model.load_state_dict(sd)
    return model


# ---------------------------------------------------------------------------- export

def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    return b


def to_torch_state_dict(model_or_params: Any, *, model_state: Any = None,
                        tensors: bool = False) -> dict[str, Any]:
    """A PyTorch state dict of a jaxnet model: ``torch_model.load_state_dict(sd)`` accepts it.

    Args:
      model_or_params: a jaxnet model (exact: the layer types decide the
        names); or a ``TrainState``; or a nested dict of arrays
        (``nn.state_dict(model)``, ``nn.split(model).params``), where a
        ``layers`` level with int keys is read as a ``Sequential`` and a 2-d
        ``kernel`` as a ``Linear``'s — pass the model when in doubt.
      model_state: with a params dict, the non-parameter state
        (``nn.split(model).state``: BatchNorm statistics) to include.
      tensors: return ``torch.Tensor`` values (needs PyTorch) instead of numpy arrays.

    Returns:
      ``{pytorch_key: array}`` in PyTorch's order: fresh, contiguous copies
      (``Linear`` kernels transposed to ``(out, in)``), plus ``num_batches_tracked``
      (int64, 0) for each BatchNorm.

    >>> from jaxnet import nn
    >>> sd = to_torch_state_dict(nn.Sequential(nn.Linear(2, 3, rngs=nn.Rngs(0)),
    ...                                         nn.BatchNorm1d(3)))
    >>> list(sd)
    ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', \
'1.num_batches_tracked']
    """
    if isinstance(model_or_params, nnx.Module):
        check_fresh(model_or_params, "model_or_params")  # never export untrained weights
        if model_state is not None:
            raise ValueError("model_state: only for a params dict; a model carries its own "
                             "state")
        entries, counters = _module_entries(model_or_params)
        flat = dict(nnx.to_flat_state(nnx.state(model_or_params, nnx.Not(nnx.RngState))))
        values = {e.path: flat[e.path] for e in entries}
        values = {p: v.get_value() if hasattr(v, "get_value") else v.value
                  for p, v in values.items()}
    else:
        tree = model_or_params
        if _is_train_state(tree):
            tree = _merge(tree.params, tree.model_state or {})
        if not isinstance(tree, Mapping):
            raise TypeError(f"model_or_params: expected a jaxnet model, a TrainState or a "
                            f"nested dict of arrays, got {type(model_or_params).__name__}")
        if model_state is not None:
            tree = _merge(tree, model_state)
        entries, counters, values = _dict_entries(tree)
    _check_unique(entries)
    out: dict[str, Any] = {}
    counters = set(counters)
    for e in entries:
        array = np.asarray(values[e.path])
        out[e.key] = _fresh(array.T if e.transpose else array)
        counter = e.key[:-len("running_var")] + _COUNTER
        if e.key.endswith("running_var") and counter in counters:  # where PyTorch has it
            out[counter] = np.zeros((), np.int64)
    if tensors:
        torch = _import_torch("tensors=True")
        out = {k: torch.from_numpy(v) for k, v in out.items()}
    return out
