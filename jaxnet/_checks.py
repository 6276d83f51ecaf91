"""Argument checks shared by the modules: one message format, naming argument and value."""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """``int(value)`` if it is an int > 0, else ``ValueError`` naming ``name`` and ``value``."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """``int(value)`` if it is an int >= 0, else ``ValueError`` naming ``name`` and ``value``."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    return int(value)


SEED_LIMIT = 2**32  # jax.random.PRNGKey keeps 32 bits of a seed


def seed_int(name: str, value: Any) -> int:
    """``int(value)`` if it is an int in [0, 2**32), else ``ValueError``.

    ``jax.random.PRNGKey`` keeps only 32 bits of larger seeds (``PRNGKey(2**40)``
    equals ``PRNGKey(0)``), so a larger seed would silently repeat another run.
    """
    if not _is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name}: expected an int in [0, 2**32), got {value!r}")
    return int(value)


def first_bad(bad: np.ndarray) -> tuple[int, ...] | int:
    """Index of the first True in ``bad``: an int for 1-D arrays, else a tuple."""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return index[0] if len(index) == 1 else index


def class_labels(where: str, labels: Any, num_classes: int, *, classes: str = "",
                 rows: Any = None, fix: str = "") -> Any:
    """Check class-index ``labels`` on the host; the one home of this check (losses, fit, evaluate).

    The dtype must be a signed integer (``TypeError``, naming ``labels.argmax(-1)``
    for float ones); every value of a numpy (host) array must lie in
    ``[0, num_classes)`` (``ValueError`` naming the first bad value and its
    index). It runs on the host array *before* any conversion to a JAX array,
    whose default int32 would wrap int64 labels >= 2**32 into valid classes.
    Traced labels (under ``jit``) are checked for their dtype only.

    Args:
      where: the prefix of the message (``"cross_entropy"``, ``"train_data"``).
      labels: the labels: a numpy array, anything ``np.asarray`` takes, or a tracer.
      num_classes: ``C``.
      classes: how the message names ``C`` (default ``"C classes"``).
      rows: for a batch, the dataset index of each row, named in the message
        instead of the row's index in the batch.
      fix: appended to the range message (``"; " + fix``).

    Returns:
      The labels as a numpy array (a tracer as it is).

    >>> class_labels("data", [0, 2, -1], 3)
    Traceback (most recent call last):
    ...
    ValueError: data: labels: expected class indices in [0, 2] (3 classes), got -1 at index 2
    """
    import jax  # here, not at the top: the command's parser imports this module (SEED_LIMIT)

    host = labels if isinstance(labels, jax.core.Tracer) else np.asarray(labels)
    if not np.issubdtype(host.dtype, np.signedinteger):
        hint = "cast with labels.astype(jnp.int32)"
        if np.issubdtype(host.dtype, np.floating) or host.dtype.name == "bfloat16":
            hint = f"for one-hot or probability targets pass labels.argmax(-1), else {hint}"
        raise TypeError(f"{where}: labels: expected a signed integer class index array, got "
                        f"{host.dtype}; {hint}")
    if isinstance(host, np.ndarray):
        bad = (host < 0) | (host >= num_classes)
        if bad.any():
            index = first_bad(bad)
            value = host[index]
            if rows is not None:  # the dataset's index of the batch's row
                row = int(rows[index if isinstance(index, int) else index[0]])
                index = row if isinstance(index, int) else (row, *index[1:])
            raise ValueError(f"{where}: labels: expected class indices in [0, {num_classes - 1}] "
                             f"({classes or f'{num_classes} classes'}), got {value!s} at "
                             f"index {index}" + (f"; {fix}" if fix else ""))
    return host
