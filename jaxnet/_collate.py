"""``default_collate``: a list of examples into one batch of numpy arrays (PyTorch's rule).

Kept apart from ``data`` (the datasets and the loader) because it is the one
place that decides a batch's dtypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _collate_numbers(numbers: Sequence[bool | int | float]) -> np.ndarray:
    """Python numbers as one array, promoted over the whole batch (see ``default_collate``)."""
    if all(isinstance(x, bool) for x in numbers):
        return np.asarray(numbers, dtype=bool)
    if all(isinstance(x, int) for x in numbers):
        lo, hi = min(numbers), max(numbers)
        for dtype in (np.int32, np.int64):
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return np.asarray(numbers, dtype=dtype)
        bad = lo if lo < np.iinfo(np.int64).min else hi
        raise ValueError(f"collate: expected ints within int64, [-2**63, 2**63), as "
                         f"torch.tensor, got {bad}; pass collate_fn= to batch them yourself")
    values = np.asarray(numbers, dtype=np.float64)
    finite = np.abs(values[np.isfinite(values)])
    fits = finite.size == 0 or finite.max() <= np.finfo(np.float32).max
    return values.astype(np.float32) if fits else values


def default_collate(items: Sequence[Any]) -> Any:
    """Stack a list of examples into one batch of numpy arrays (PyTorch's default collate).

    Tuples and lists are collated field by field, dicts key by key; arrays and
    numbers are stacked along a new first axis; numpy values keep their dtype.
    Python numbers are promoted over the whole batch like ``torch.tensor`` (any
    float makes it floating; all bools stay bool), then int32/float32 when every
    value fits, else int64/float64, which JAX cuts to 32 bits unless
    ``jax_enable_x64`` is on.

    Args:
      items: a non-empty list of ``B`` examples of one structure (tuples,
        lists, dicts, arrays of one shape ``S`` or numbers).

    Returns:
      The same structure (tuples for tuples and lists) with numpy arrays of
      shape ``(B, *S)`` as leaves.

    >>> x, y = default_collate([(np.zeros(2), 1), (np.ones(2), 0)])
    >>> x.shape, y.tolist(), y.dtype
    ((2, 2), [1, 0], dtype('int32'))
    >>> default_collate([0, 1.5]).dtype, default_collate([1, 2**40]).dtype
    (dtype('float32'), dtype('int64'))
    """
    first = items[0]
    if isinstance(first, tuple | list):
        if any(len(item) != len(first) for item in items):
            raise ValueError(f"collate: expected examples of equal length, got lengths "
                             f"{sorted({len(item) for item in items})}")
        return tuple(default_collate([item[i] for item in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([item[k] for item in items]) for k in first}
    if all(isinstance(item, bool | int | float) for item in items):
        return _collate_numbers(items)
    try:
        return np.stack([np.asarray(item) for item in items])
    except ValueError as e:
        raise ValueError(f"collate: cannot stack the examples' values into one array ({e}); "
                         f"pass collate_fn= to batch them yourself") from None
