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


def seed_int(name: str, value: Any) -> int:
    """``int(value)`` if it is an int in [0, 2**32), else ``ValueError``.

    ``jax.random.PRNGKey`` keeps only 32 bits of larger seeds (``PRNGKey(2**40)``
    equals ``PRNGKey(0)``), so a larger seed would silently repeat another run.
    """
    if not _is_int(value) or not 0 <= value < 2**32:
        raise ValueError(f"{name}: expected an int in [0, 2**32), got {value!r}")
    return int(value)
