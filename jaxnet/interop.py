"""PyTorch state dicts and safetensors files in and out of jaxnet models, never unpickling.

A PyTorch ``state_dict`` names each array by the module path PyTorch gives it
(``layers.0.weight``, ``fc1.bias``, ``bn.running_mean``); a jaxnet model holds
the same arrays under its NNX attribute paths. This module maps one onto the
other by structure and order:

* ``Linear``: PyTorch's ``weight`` is ``(out_features, in_features)``; jaxnet's
  ``kernel`` is its transpose, ``(in_features, out_features)``. ``bias`` is the same.
* ``BatchNorm1d``: ``weight``, ``bias``, ``running_mean``, ``running_var`` as
  they are; PyTorch's ``num_batches_tracked`` counter is written on export (as
  0: jaxnet does not count, and PyTorch only reads it when ``momentum=None``)
  and accepted and ignored on import.
* ``ReLU``, ``Sigmoid``, ``Tanh``, ``GELU``, ``Identity``, ``Softmax``,
  ``LogSoftmax``, ``Flatten``, ``Dropout`` hold no arrays: they only take an
  index in a ``Sequential``, as in PyTorch.
* ``Sequential`` and ``MLP``: layer ``i`` is ``i.`` (NNX keeps the layers in
  a list attribute ``layers``, which PyTorch's ``nn.Sequential`` does not
  have, so that level is left out of the name); a user module's attributes
  keep their names (``self.layers = nn.Sequential(...)`` gives
  ``layers.0.weight``; ``self.fc1 = nn.Linear(...)`` gives ``fc1.weight``).

Files: ``.safetensors`` through the ``safetensors`` package's numpy API (no
PyTorch needed: ``pip install 'jaxnet[interop]'``); ``.pt``/``.pth``/``.bin``
only through ``torch.load(path, weights_only=True, map_location="cpu")``, which
refuses any pickled object other than tensors and plain containers (``pip
install 'jaxnet[torch]'``). There is no fallback to full unpickling.

>>> from jaxnet import nn
>>> model = nn.MLP(4, [3], 2, rngs=0)
>>> sd = to_torch_state_dict(model)
>>> {k: v.shape for k, v in sd.items()}
{'0.weight': (3, 4), '0.bias': (3,), '2.weight': (2, 3), '2.bias': (2,)}
>>> copy = from_torch_state_dict(sd, nn.MLP(4, [3], 2, rngs=1))
>>> bool((copy[0].kernel[...] == model[0].kernel[...]).all())
True
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import uuid
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from . import nn
from ._checks import non_negative_int

__all__ = [
    "StateDictMismatchError",
    "convert",
    "from_torch_state_dict",
    "load",
    "save",
    "to_torch_state_dict",
]

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
_COUNTER = "num_batches_tracked"
# Within one layer, PyTorch's order (registration order), then anything else by name.
_LEAF_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, _COUNTER: 4}
# NNX containers whose own attribute name PyTorch does not have.
_SEQUENTIAL_LIST = "layers"
# Flax layers whose arrays map onto PyTorch's as they are (names and layouts).
_FLAX_OK = (nnx.Linear, nnx.Sequential, nnx.List, nnx.Dict)


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


class _Entry(NamedTuple):
    """One array: its PyTorch key, its path in the jaxnet state, and whether to transpose."""

    key: str
    path: tuple
    transpose: bool
    shape: tuple  # the jaxnet (NNX) shape
    dtype: Any

    @property
    def torch_shape(self) -> tuple:
        return self.shape[::-1] if self.transpose else self.shape


# ---------------------------------------------------------------------------- names

def _join(prefix: list, leaf: str) -> str:
    return ".".join([*(str(p) for p in prefix), leaf])


def _order_key(name: str) -> tuple:
    """Layer by layer (indices numerically, names alphabetically, as NNX keeps them),
    weight before bias. (NNX does not keep the order ``__init__`` assigned the layers in,
    so a user module's keys may come in another order than PyTorch's; ``load_state_dict``
    does not depend on it.)"""
    parts = name.split(".")
    owner = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts[:-1]]
    return owner, _LEAF_ORDER.get(parts[-1], len(_LEAF_ORDER)), parts[-1]


def _module_entries(model: nnx.Module) -> tuple[list[_Entry], list[str]]:
    """The PyTorch key of every array of ``model``, and its BatchNorm counters' keys."""
    modules = dict(nnx.iter_modules(model))
    entries, counters = [], []
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Not(nnx.RngState))):
        value = var.get_value() if hasattr(var, "get_value") else var.value
        if value is None:
            continue
        owner_path = max((p for p in modules if path[:len(p)] == p and len(p) < len(path)),
                         key=len)
        owner = modules[owner_path]
        cls = type(owner)
        if cls.__module__.startswith("flax.") and not isinstance(owner, _FLAX_OK):
            where = ".".join(map(str, owner_path)) or "model"
            raise TypeError(f"model: {where} is a flax.nnx.{cls.__name__}, which has no "
                            f"PyTorch mapping in jaxnet.interop; use the jaxnet.nn layers "
                            f"(Linear, BatchNorm1d, the activations, Dropout, Flatten)")
        # Leave out the `layers` list of every Sequential (PyTorch names its children 0, 1…).
        prefix = [e for i, e in enumerate(path[:-1])
                  if not (e == _SEQUENTIAL_LIST and isinstance(modules.get(path[:i]),
                                                               nnx.Sequential))]
        leaf = path[-1]
        transpose = isinstance(owner, nnx.Linear) and leaf == "kernel"
        name = _join(prefix, "weight" if transpose else str(leaf))
        entries.append(_Entry(name, path, transpose, tuple(np.shape(value)),
                              np.dtype(value.dtype)))
        if isinstance(owner, nn.BatchNorm1d) and leaf == "running_var":
            counters.append(_join(prefix, _COUNTER))
    entries.sort(key=lambda e: _order_key(e.key))
    return entries, counters


def _dict_entries(tree: Mapping) -> tuple[list[_Entry], list[str], dict]:
    """Names for a bare nested dict (no model to read the layer types from).

    A ``layers`` level whose keys are ints is taken to be a ``Sequential``'s
    list, a 2-d ``kernel`` a ``Linear``'s, and a level holding ``running_mean``
    and ``running_var`` a ``BatchNorm1d``.
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    entries, counters, values = [], [], {}
    for keys, value in flat:
        path = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in keys)
        prefix = [e for i, e in enumerate(path[:-1])
                  if not (e == _SEQUENTIAL_LIST and i + 1 < len(path) - 1
                          and isinstance(path[i + 1], int))]
        leaf = path[-1]
        transpose = leaf == "kernel" and np.ndim(value) == 2
        name = _join(prefix, "weight" if transpose else str(leaf))
        entries.append(_Entry(name, path, transpose, tuple(np.shape(value)),
                              np.asarray(value).dtype))
        values[path] = value
        if leaf == "running_var":
            parent = tree
            for k in path[:-1]:
                parent = parent[k]
            if "running_mean" in parent:
                counters.append(_join(prefix, _COUNTER))
    entries.sort(key=lambda e: _order_key(e.key))
    return entries, counters, values


def _check_unique(entries: list[_Entry]) -> None:
    seen: dict[str, tuple] = {}
    for e in entries:
        if e.key in seen:
            raise ValueError(f"model: two arrays map to the PyTorch key {e.key!r} "
                             f"({'/'.join(map(str, seen[e.key]))} and "
                             f"{'/'.join(map(str, e.path))})")
        seen[e.key] = e.path


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


def _fmt_shape(shape: tuple) -> str:
    return str(tuple(int(s) for s in shape))


# ---------------------------------------------------------------------------- import

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
    """A new model of ``model``'s architecture carrying a PyTorch state dict's values.

    ``model`` is a template: it is copied, never changed. Values may be torch
    tensors, numpy or JAX arrays, and are cast to the template's dtypes (as
    PyTorch's ``load_state_dict`` does). BatchNorm's ``num_batches_tracked`` is
    accepted and ignored.

    Args:
      state_dict: ``{pytorch_key: tensor}``, e.g. ``torch_model.state_dict()``
        or ``jaxnet.interop.load("model.safetensors")``.
      model: a jaxnet model of the same architecture (its values are not used).

    Returns:
      A new model (same class as ``model``) holding the state dict's values.

    Raises:
      StateDictMismatchError (a ``ValueError``): lists every missing,
      unexpected, mis-shaped and non-array key at once.

    >>> from jaxnet import nn
    >>> sd = {"0.weight": np.ones((3, 4)), "0.bias": np.zeros(3)}
    >>> layer = from_torch_state_dict(sd, nn.Sequential(nn.Linear(4, 3, rngs=nn.Rngs(0))))[0]
    >>> layer.kernel.shape, layer.kernel.dtype
    ((4, 3), dtype('float32'))
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected a jaxnet model (nn.Module) to copy the architecture "
                        f"from, got {type(model).__name__}")
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
    new = nnx.clone(model)
    nn.load_state_dict(new, values)
    return new


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
        (``nn.state_dict(model)``, ``nn.functional(model).params``), where a
        ``layers`` level with int keys is read as a ``Sequential`` and a 2-d
        ``kernel`` as a ``Linear``'s — pass the model when in doubt.
      model_state: with a params dict, the non-parameter state
        (``nn.functional(model).state``: BatchNorm statistics) to include.
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
        if hasattr(tree, "params") and hasattr(tree, "opt_state"):  # a TrainState
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


# ---------------------------------------------------------------------------- files

def _import_torch(why: str):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{why} needs PyTorch: pip install 'jaxnet[torch]'; or use a "
                          f".safetensors file, which jaxnet reads and writes without PyTorch "
                          f"(pip install 'jaxnet[interop]')") from None
    return torch


def _import_safetensors(why: str):
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError(f"{why} needs the safetensors package: pip install "
                          f"'jaxnet[interop]'") from None
    return st


def _kind(path: Path, name: str) -> str:
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    raise ValueError(f"{name}: expected a {SAFETENSORS_SUFFIX} or {'/'.join(TORCH_SUFFIXES)} "
                     f"file, got {os.fspath(path)!r}")


def _flat_tensors(obj: Any, shown: str, key: str | None) -> dict[str, np.ndarray]:
    """The ``{name: array}`` dict inside what ``torch.load`` returned."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            keys = sorted(map(str, obj)) if isinstance(obj, Mapping) else []
            raise ValueError(f"key: {shown} has no entry {key!r}; its top-level keys: {keys}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{shown}: expected a state dict (a dict of tensors, as "
                         f"torch.save(model.state_dict(), path) writes), got "
                         f"{type(obj).__name__}")
    out, nested, other = {}, [], []
    for k, v in obj.items():
        array = _to_numpy(v)
        if array is not None and isinstance(k, str):
            out[k] = array
        elif isinstance(v, Mapping):
            nested.append(str(k))
        else:
            other.append(f"{k!r} ({type(v).__name__})")
    if nested:
        raise ValueError(f"{shown}: holds a training checkpoint, not a state dict: its "
                         f"entries {nested} are dicts; pass key= (--key) with the one holding "
                         f"the model's tensors, e.g. key={nested[0]!r}")
    if other:
        raise ValueError(f"{shown}: expected a dict of tensors; these entries are not: "
                         + ", ".join(other))
    return out


def _refusal(e: BaseException) -> str:
    """What torch refused, without its advice to allowlist it."""
    text = str(e)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it names {found.group(1)}, which weights_only=True does not allow"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def load(path, *, key: str | None = None) -> dict[str, np.ndarray]:
    """Read a state dict from a ``.safetensors`` or ``.pt``/``.pth``/``.bin`` file.

    ``.safetensors`` is read with the ``safetensors`` package's numpy API (no
    PyTorch needed). PyTorch files are read only with ``torch.load(path,
    weights_only=True, map_location="cpu")``: a file that holds anything but
    tensors and plain containers (for example a pickled model, or code) is
    refused without running it. There is no fallback to full unpickling.

    Args:
      path: the file (any path: relative, ``~``...).
      key: for a training checkpoint saved as a dict (``{"epoch": …,
        "model_state_dict": …}``), the entry holding the state dict.

    Returns:
      ``{pytorch_key: numpy array}`` (bfloat16 tensors become float32, exactly).

    Raises:
      FileNotFoundError; ImportError (PyTorch or safetensors missing, saying
      what to install); ValueError (not a state dict, or refused as unsafe).

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "layer.safetensors")
    >>> _ = save(file, {"weight": np.ones((3, 2), np.float32), "bias": np.zeros(3, np.float32)})
    >>> {k: (v.shape, str(v.dtype)) for k, v in sorted(load(file).items())}
    {'bias': ((3,), 'float32'), 'weight': ((3, 2), 'float32')}
    """
    shown = os.fspath(path)
    file = Path(shown).expanduser()
    kind = _kind(file, "path")
    if not file.is_file():
        raise FileNotFoundError(f"path: {shown} does not exist or is not a file")
    if kind == "safetensors":
        if key is not None:
            raise ValueError(f"key: only for PyTorch files; {shown} is a flat safetensors "
                             f"file (key={key!r})")
        st = _import_safetensors(f"reading {shown}")
        try:
            arrays = st.load_file(file, backend="pread")
        except Exception as e:  # the Rust reader raises its own error types
            raise ValueError(f"{shown}: not a readable safetensors file ({e})") from None
        return {k: np.array(v) for k, v in arrays.items()}
    torch = _import_torch(f"reading the PyTorch file {shown}")
    try:
        with warnings.catch_warnings():
            # Said of files pickled with protocol > 2 just before they are refused or read.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(file, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{shown}: refused: it holds Python objects besides tensors ({_refusal(e)}); "
            f"jaxnet reads PyTorch files only with torch.load(weights_only=True), which runs "
            f"no code from the file. If you trust the file, load it in PyTorch and save "
            f"model.state_dict() (or a .safetensors file) instead") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{shown}: not a readable PyTorch file ({_refusal(e)})") from None
    return _flat_tensors(obj, shown, key)


def _write_atomic(target: Path, shown: str, write: Callable[[Path], None],
                  overwrite: bool) -> None:
    """Write through a temporary file in the same folder, then rename it into place.

    Without ``overwrite`` the rename is a hard link, which fails if ``target``
    appeared meanwhile, so an existing file is never replaced.
    """
    tmp = target.with_name(f".{target.name}.jaxnet-tmp-{uuid.uuid4().hex}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise FileExistsError(f"path: {shown} already exists; pass overwrite=True "
                                      f"(--overwrite) to replace it") from None
            except OSError:  # a file system without hard links
                if os.path.lexists(target):
                    raise FileExistsError(f"path: {shown} already exists") from None
                os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def save(path, state_dict: Any, *, overwrite: bool = False) -> Path:
    """Write a state dict (or a model's, via ``to_torch_state_dict``) to a file.

    ``.safetensors`` needs only the ``safetensors`` package (numpy API);
    ``.pt``/``.pth``/``.bin`` need PyTorch (``torch.save`` of a dict of
    tensors, which ``torch.load(weights_only=True)`` reads). Written atomically.

    Args:
      path: the file to write; its folder must exist.
      state_dict: ``{pytorch_key: array or tensor}``, a jaxnet model or a ``TrainState``.
      overwrite: replace an existing file (otherwise ``FileExistsError``).

    Returns:
      The file's absolute path.

    >>> import tempfile
    >>> from jaxnet import nn
    >>> file = save(tempfile.mkdtemp() + "/mlp.safetensors", nn.MLP(4, [3], 2, rngs=0))
    >>> sorted(load(file))
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    shown = os.fspath(path)
    target = Path(shown).expanduser().absolute()
    kind = _kind(target, "path")
    if isinstance(state_dict, nnx.Module) or hasattr(state_dict, "opt_state"):
        state_dict = to_torch_state_dict(state_dict)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a dict of arrays or a jaxnet model, got "
                        f"{type(state_dict).__name__}")
    arrays, bad = {}, []
    for k, v in state_dict.items():
        array = _to_numpy(v)
        if not isinstance(k, str) or array is None:
            bad.append(f"{k!r} ({type(v).__name__})")
        else:
            arrays[k] = _fresh(array)
    if bad:
        raise ValueError("state_dict: expected string keys and array values; not: "
                         + ", ".join(bad))
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"path: {shown} already exists; pass overwrite=True "
                              f"(--overwrite) to replace it")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"path: cannot write {shown}: its folder does not exist")
    if kind == "safetensors":
        st = _import_safetensors(f"writing {shown}")
        data = st.save(arrays, metadata={"format": "pt"})
        _write_atomic(target, shown, lambda tmp: tmp.write_bytes(data), overwrite)
    else:
        torch = _import_torch(f"writing the PyTorch file {shown}")
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        _write_atomic(target, shown, lambda tmp: torch.save(tensors, tmp), overwrite)
    return target


# ---------------------------------------------------------------------------- convert

def _config_from_json(saved: dict, shown: str):
    from .mnist import MnistConfig

    names = {f.name for f in dataclasses.fields(MnistConfig)}
    unknown = sorted(set(saved) - names - {"schedule_steps"})
    if unknown:
        raise ValueError(f"source: {shown} was not written by jaxnet train mnist (its config "
                         f"has {unknown}); convert other models with interop.to_torch_state_dict")
    values = {k: v for k, v in saved.items() if k in names}
    if "hidden" in values:
        values["hidden"] = tuple(values["hidden"])
    return MnistConfig(**values)


def _describe(config) -> str:
    return f"MLP 784-{'-'.join(map(str, config.hidden))}-10"


def _template_state(config):
    from .mnist import build_model, make_optimizer, steps_per_epoch
    from .train import TrainState

    model = build_model(config)
    _, params, model_state = nn.functional(model)
    optimizer = make_optimizer(config, steps_per_epoch(config))
    return model, TrainState.create(params, optimizer, model_state=model_state,
                                    seed=config.seed)


def _file_to_checkpoint(source: str, destination: str, config, trained_epochs: int,
                        key: str | None) -> dict:
    from . import checkpoint
    from .mnist import RECIPES, build_model, make_optimizer, steps_per_epoch
    from .train import TrainState

    config = config if config is not None else RECIPES["default"]
    dest = Path(destination).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"destination: {destination} exists and is not an empty folder; "
                              f"a converted checkpoint starts a new run in a new or empty folder")
    checkpoint.check_new_run(destination, resume=False, name="destination")
    state_dict = load(source, key=key)
    model = from_torch_state_dict(state_dict, build_model(config))
    _, params, model_state = nn.functional(model)
    steps = steps_per_epoch(config)
    # PyTorch's optimizer state is not in a state dict: the optimizer starts fresh
    # (Adam's moments at zero, a schedule from its start) at epoch `trained_epochs`.
    state = TrainState.create(params, make_optimizer(config, steps), model_state=model_state,
                              seed=config.seed)
    checkpoint.save(destination, state, step=trained_epochs,
                    metadata={"epoch": trained_epochs, "history": [],
                              "config": config.to_json(steps),
                              "converted_from": os.path.basename(source)})
    return {"direction": "file->checkpoint", "arrays": len(state_dict),
            "params": nn.count_params(model), "config": config, "epoch": trained_epochs}


def _checkpoint_to_file(source: str, destination: str, config, step: int | None,
                        overwrite: bool) -> dict:
    from . import checkpoint

    meta = checkpoint.load_metadata(source, step)
    saved = meta.get("config") or None
    if saved is not None:
        saved_config = _config_from_json(saved, source)
        if config is not None:
            a, b = saved_config.to_json(), config.to_json()
            diff = {k: (a[k], b[k]) for k in a if k != "epochs" and a[k] != b[k]}
            if diff:
                raise ValueError(
                    f"config: {source} was trained with other settings: "
                    + ", ".join(f"{k} {x!r} (checkpoint) vs {y!r} (given)"
                                for k, (x, y) in diff.items())
                    + "; leave them out: the checkpoint's saved config is used")
        config = saved_config
    elif config is None:
        raise ValueError(f"source: {source} has no saved config; give the settings it was "
                         f"trained with (--recipe, --hidden, --optimizer, --schedule...)")
    model, like = _template_state(config)
    state = checkpoint.restore(source, like, step=step)
    nn.load_state_dict(model, _merge(state.params, state.model_state or {}))
    save(destination, model, overwrite=overwrite)
    return {"direction": "checkpoint->file", "arrays": len(to_torch_state_dict(model)),
            "params": nn.count_params(model), "config": config,
            "epoch": meta.get("epoch")}


def _unused(path: str, what: str, **arguments: Any) -> None:
    """Refuse an argument that would be silently ignored for this direction."""
    for name, value in arguments.items():
        if value is not None and value != 0:
            raise ValueError(f"{name}: not used when converting {path} ({what}), got "
                             f"{value!r}")


def convert(source, destination, *, config=None, trained_epochs: int = 0,
            step: int | None = None, key: str | None = None, overwrite: bool = False) -> dict:
    """What ``jaxnet convert`` does, for the MNIST MLP of ``jaxnet train mnist``.

    * file → checkpoint folder: a ``.pt``/``.pth``/``.bin``/``.safetensors``
      state dict of the MNIST MLP (PyTorch keys ``0.weight``… of
      ``nn.Sequential(Linear(784, h1), ReLU(), …, Linear(hk, 10))``) becomes a
      ``jaxnet train mnist`` checkpoint at epoch ``trained_epochs``: the
      weights, a *fresh* optimizer state (a state dict has none: Adam's
      moments start at zero and a schedule from its beginning), and
      ``config``. ``jaxnet train mnist --checkpoint-dir DEST --resume`` with
      the same settings then trains epochs ``trained_epochs + 1 …`` from the
      converted weights; with ``--epochs trained_epochs`` it trains nothing
      and reports the test accuracy.
    * checkpoint folder → file: the newest (or ``step``) checkpoint's model,
      built from the checkpoint's saved config, as a PyTorch state dict.
    * file → file: a format change (e.g. ``.pt`` → ``.safetensors``).

    Args:
      source, destination: paths (a folder is a checkpoint folder).
      config: an ``MnistConfig`` (default ``RECIPES["default"]``); for a
        checkpoint source only needed when it has no saved config.
      trained_epochs: the epoch the new checkpoint records.
      step: which checkpoint of a checkpoint source (default the newest).
      key: the state dict's entry in a ``.pt`` training checkpoint.
      overwrite: replace an existing destination file (a checkpoint folder
        must be new or empty: nothing there is ever replaced).

    Returns:
      dict with ``direction`` (``"file->checkpoint"``, ``"checkpoint->file"``
      or ``"file->file"``), ``arrays`` (int, how many), ``params`` (int, their
      total size), ``config`` (the ``MnistConfig`` or ``None``) and ``epoch``.

    >>> import os, tempfile
    >>> from jaxnet import mnist
    >>> config = mnist.MnistConfig(hidden=(8,))
    >>> d = tempfile.mkdtemp()
    >>> file = save(os.path.join(d, "mlp.safetensors"), mnist.build_model(config))
    >>> result = convert(file, os.path.join(d, "run"), config=config, trained_epochs=1)
    >>> result["direction"], result["arrays"], result["params"], result["epoch"]
    ('file->checkpoint', 4, 6370, 1)
    >>> convert(os.path.join(d, "run"), os.path.join(d, "back.safetensors"))["direction"]
    'checkpoint->file'
    """
    from .mnist import MnistConfig

    if config is not None and not isinstance(config, MnistConfig):
        raise TypeError(f"config: expected a jaxnet.mnist.MnistConfig, got "
                        f"{type(config).__name__}")
    trained_epochs = non_negative_int("trained_epochs", trained_epochs)
    src, dst = os.fspath(source), os.fspath(destination)
    src_path, dst_path = Path(src).expanduser(), Path(dst).expanduser()
    dst_is_file = dst_path.suffix.lower() in (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES)
    if src_path.is_dir():
        if not dst_is_file:
            raise ValueError(f"destination: converting the checkpoint folder {src} needs a "
                             f"{SAFETENSORS_SUFFIX} or {'/'.join(TORCH_SUFFIXES)} file, "
                             f"got {dst!r}")
        if os.path.lexists(dst_path) and not overwrite:
            raise FileExistsError(f"destination: {dst} already exists; pass overwrite=True "
                                  f"(--overwrite) to replace it")
        _unused(src, "a checkpoint folder", key=key, trained_epochs=trained_epochs)
        return _checkpoint_to_file(src, dst, config, step, overwrite)
    if not src_path.exists():
        raise FileNotFoundError(f"source: {src} does not exist")
    _kind(src_path, "source")
    _unused(src, "a file", step=step)
    if dst_is_file:
        _unused(dst, "a format change only", config=config, trained_epochs=trained_epochs)
        if os.path.lexists(dst_path) and not overwrite:
            raise FileExistsError(f"destination: {dst} already exists; pass overwrite=True "
                                  f"(--overwrite) to replace it")
        arrays = load(src, key=key)
        save(dst, arrays, overwrite=overwrite)
        return {"direction": "file->file", "arrays": len(arrays),
                "params": int(sum(a.size for a in arrays.values())), "config": None,
                "epoch": None}
    return _file_to_checkpoint(src, dst, config, trained_epochs, key)
