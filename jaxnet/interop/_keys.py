"""PyTorch state dict keys of a model's (or a nested dict's) arrays, in PyTorch's order.

The dotted names come from ``jaxnet._torchnames``; this module adds what is
particular to state dicts: ``Linear``'s ``kernel`` is PyTorch's transposed
``weight``, BatchNorm's ``num_batches_tracked`` counter, and the key order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from .. import nn
from .._torchnames import part_key, sequential_lists, sequential_lists_in, torch_name

_COUNTER = "num_batches_tracked"
# Within one layer, PyTorch's order (registration order), then anything else by name.
_LEAF_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, _COUNTER: 4}
# Flax layers whose arrays map onto PyTorch's as they are (names and layouts).
_FLAX_OK = (nnx.Linear, nnx.Sequential, nnx.List, nnx.Dict)


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


def _order_key(name: str) -> tuple:
    """Layer by layer (indices numerically, names alphabetically, as NNX keeps them),
    weight before bias. (NNX does not keep the order ``__init__`` assigned the layers in,
    so a user module's keys may come in another order than PyTorch's; ``load_state_dict``
    does not depend on it.)"""
    parts = name.split(".")
    owner = [part_key(p) for p in parts[:-1]]
    return owner, _LEAF_ORDER.get(parts[-1], len(_LEAF_ORDER)), parts[-1]


def _module_entries(model: nnx.Module) -> tuple[list[_Entry], list[str]]:
    """The PyTorch key of every array of ``model``, and its BatchNorm counters' keys."""
    modules = dict(nnx.iter_modules(model))
    hidden = sequential_lists(modules)
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
        leaf = path[-1]
        transpose = isinstance(owner, nnx.Linear) and leaf == "kernel"
        name = torch_name((*path[:-1], "weight" if transpose else str(leaf)), hidden)
        entries.append(_Entry(name, path, transpose, tuple(np.shape(value)),
                              np.dtype(value.dtype)))
        if isinstance(owner, nn.BatchNorm1d) and leaf == "running_var":
            counters.append(torch_name((*path[:-1], _COUNTER), hidden))
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
        hidden = sequential_lists_in(path)
        leaf = path[-1]
        transpose = leaf == "kernel" and np.ndim(value) == 2
        name = torch_name((*path[:-1], "weight" if transpose else str(leaf)), hidden)
        entries.append(_Entry(name, path, transpose, tuple(np.shape(value)),
                              np.asarray(value).dtype))
        values[path] = value
        if leaf == "running_var":
            parent = tree
            for k in path[:-1]:
                parent = parent[k]
            if "running_mean" in parent:
                counters.append(torch_name((*path[:-1], _COUNTER), hidden))
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
