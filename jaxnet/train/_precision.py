"""The precision policy: which dtype the forward pass computes in (``precision=``).

``"float32"`` (the default) computes everything in float32 and adds nothing to
the compiled step. ``"bf16"`` is PyTorch's ``torch.autocast(dtype=torch.bfloat16)``
with float32 master weights: inside the loss function the float parameters and
float inputs are cast to bfloat16 before ``apply``, and its float outputs back
to float32 before the loss. So the parameters, the optimizer state, the
gradients (they flow back through the cast) and the loss stay float32.
Integer inputs and labels are never cast. The model state (BatchNorm running
statistics) stays float32: in training it is not cast, so the running update
is computed in float32, and what comes back keeps the dtypes it had; in
evaluation, where nothing is updated, it is cast with the parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PRECISIONS = ("float32", "bf16")  # what --precision offers; "bfloat16" is accepted too
_ALIASES = {"float32": "float32", "bf16": "bf16", "bfloat16": "bf16"}


def check_precision(value: Any) -> str:
    """The policy's name, ``"float32"`` or ``"bf16"`` (``"bfloat16"`` is ``"bf16"``).

    >>> check_precision("bfloat16")
    'bf16'
    >>> check_precision("fp16")
    Traceback (most recent call last):
    ...
    ValueError: precision: expected "float32" or "bf16" (or "bfloat16"), got 'fp16'; ...
    """
    if isinstance(value, str) and value in _ALIASES:
        return _ALIASES[value]
    raise ValueError(f'precision: expected "float32" or "bf16" (or "bfloat16"), got {value!r}; '
                     f"float16 is not offered (it needs loss scaling; bfloat16 does not)")


def _is_float(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def cast_for_compute(tree: Any, precision: str) -> Any:
    """``tree`` with its float leaves in the compute dtype of ``precision``.

    Args:
      tree: any pytree (parameters, inputs, model state).
      precision: a ``check_precision`` name.

    Returns:
      ``tree`` itself for ``"float32"``; for ``"bf16"`` a tree of the same
      structure, float leaves cast to bfloat16, all other leaves unchanged.

    >>> tree = {"w": jnp.ones(2), "labels": jnp.arange(2)}
    >>> cast = cast_for_compute(tree, "bf16")
    >>> str(cast["w"].dtype), str(cast["labels"].dtype), cast_for_compute(tree, "float32") is tree
    ('bfloat16', 'int32', True)
    """
    if precision == "float32":
        return tree
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16) if _is_float(a) else a, tree)


def cast_outputs(tree: Any, precision: str) -> Any:
    """The model's outputs for the loss: its bfloat16 leaves back in float32.

    >>> cast_outputs(jnp.ones(2, jnp.bfloat16), "bf16").dtype
    dtype('float32')
    """
    if precision == "float32":
        return tree
    return jax.tree.map(lambda a: a.astype(jnp.float32)
                        if getattr(a, "dtype", None) == jnp.bfloat16 else a, tree)


def like(new: Any, old: Any, precision: str) -> Any:
    """``new`` (the model state ``apply`` returned) in the dtypes of ``old`` (the one given).

    A model that stores a value computed from bfloat16 activations keeps its
    state's float32 dtypes, so the state's type, and a scan's carry, never changes.

    >>> like({"m": jnp.ones(2, jnp.bfloat16)}, {"m": jnp.zeros(2)}, "bf16")["m"].dtype
    dtype('float32')
    """
    if precision == "float32":
        return new
    return jax.tree.map(lambda n, o: n.astype(o.dtype) if _is_float(o) else n, new, old)
