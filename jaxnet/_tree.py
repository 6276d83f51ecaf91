"""Pytree helpers shared by training, checkpoints and the CLI."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_paths(tree: Any) -> list[str]:
    """Slash-separated paths of a pytree's leaves in tree order, e.g. ``layers/0/kernel``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_key_name(k) for k in path) or "<root>" for path, _ in flat]


def array_digest(x: Any) -> str:
    """sha256 of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(np.asarray(x))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(tree: Any) -> str:
    """sha256 of every leaf's bytes in tree order: equal iff the values are bit-identical.

    >>> fingerprint({"w": np.zeros(2, np.float32)}) == fingerprint({"w": np.zeros(2, np.float32)})
    True
    """
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()
