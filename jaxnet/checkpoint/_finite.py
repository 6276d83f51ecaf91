"""Which values of a state are NaN/Inf: all that a checkpoint saves, named by path.

The NaN guard (``callbacks.FiniteCheck``), the step-by-step replay that names
the culprit (``train.first_non_finite``) and the resume check all ask the
same question of the same tree: every floating leaf — parameters, BatchNorm
statistics (``model_state``) and the optimizer state alike. Integer leaves
(the step, the key) cannot be NaN and are skipped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _floating(x) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return isinstance(x, float | complex)
    return jnp.issubdtype(dtype, jnp.inexact)


@jax.jit
def _flags(leaves: list) -> jax.Array:
    """One bool per leaf: all of it finite."""
    if not leaves:
        return jnp.ones((0,), bool)
    return jnp.stack([jnp.isfinite(x).all() for x in leaves])


def _named_floats(tree: Any) -> tuple[list[str], list]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    names, leaves = [], []
    for path, leaf in flat:
        if _floating(leaf):
            names.append(jax.tree_util.keystr(path).lstrip(".") or "<root>")
            leaves.append(leaf)
    return names, leaves


def all_finite(tree: Any) -> bool:
    """Whether every floating value of ``tree`` is finite (one compiled reduction).

    >>> all_finite({"w": jnp.ones(2), "step": jnp.int32(3)})
    True
    >>> all_finite({"w": jnp.array([1.0, jnp.inf])})
    False
    """
    return bool(np.all(np.asarray(_flags(_named_floats(tree)[1]))))


def non_finite_paths(tree: Any) -> list[str]:
    """The paths of ``tree``'s floating leaves that hold a NaN or Inf, in tree order.

    A path reads as the learner indexes the state, e.g.
    ``model_state['bn']['running_var']`` or ``opt_state[0].nu['w']`` of a
    ``TrainState``.

    Args:
      tree: any pytree (a ``TrainState``, a params dict...).

    Returns:
      list of str, empty when every value is finite.

    >>> non_finite_paths({"a": jnp.ones(2), "b": {"c": jnp.array([jnp.nan])}})
    ["['b']['c']"]
    """
    names, leaves = _named_floats(tree)
    flags = np.asarray(_flags(leaves))
    return [name for name, ok in zip(names, flags, strict=True) if not ok]


def refusal(where: str, bad: list[str]) -> str:
    """The one line that refuses to continue from a state holding NaN/Inf at ``bad``.

    >>> refusal("ck/step_00000002", ["params['w']"])[:52]
    "ck/step_00000002 holds NaN/Inf in params['w']: it wa"
    """
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return (f"{where} holds NaN/Inf in {', '.join(bad[:3])}{more}: it was saved or trained with "
            f"check_finite=False (--no-check-finite); resume from an earlier checkpoint or "
            f"start from a fresh state, or pass check_finite=False (--no-check-finite) again "
            f"to continue it anyway")
