"""NNX path -> PyTorch name: the one home of how PyTorch names a model's parts.

PyTorch names a layer or an array by its attribute path joined with dots
(``fc1.weight``). NNX's paths match, except that every ``Sequential`` keeps its
layers in a list attribute ``layers`` that PyTorch's ``nn.Sequential`` does not
have: NNX's ``('layers', 'layers', 0, 'kernel')`` is PyTorch's ``layers.0.…``.
``print(model)`` (``nn``), ``nn.summary`` and the state dict keys of
``interop`` all name through this module.

>>> torch_name(("layers", "layers", 0, "bias"), {("layers", "layers")})
'layers.0.bias'
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from flax import nnx

SEQUENTIAL_LIST = "layers"
"""The attribute in which ``nnx.Sequential`` keeps its layers; PyTorch has no such level."""


def children(module: nnx.Module) -> list[tuple[str, Any]]:
    """A module's direct sub-layers with PyTorch's names, in the order they were assigned.

    Args:
      module: any NNX module.

    Returns:
      ``[(name, child), …]``: a ``Sequential``'s or ``nnx.List``'s items by
      index (``"0"``, ``"1"``…), otherwise the public attributes holding modules.

    >>> [name for name, _ in children(nnx.Sequential(nnx.Linear(1, 1, rngs=nnx.Rngs(0))))]
    ['0']
    """
    if isinstance(module, nnx.Sequential):
        module = getattr(module, SEQUENTIAL_LIST)
    if isinstance(module, nnx.List):
        return [(str(i), layer) for i, layer in enumerate(module)]
    return [(name, value) for name, value in vars(module).items()
            if isinstance(value, nnx.Module) and not name.startswith("_")]


def sequential_lists(modules: Mapping[tuple, Any]) -> set[tuple]:
    """The NNX paths that PyTorch's names leave out: each ``Sequential``'s ``layers`` list.

    Args:
      modules: ``{path: module}``, e.g. ``dict(nnx.iter_modules(model))``.

    Returns:
      A set of path prefixes to pass to ``torch_name``.
    """
    return {path + (SEQUENTIAL_LIST,) for path, module in modules.items()
            if isinstance(module, nnx.Sequential)}


def sequential_lists_in(path: tuple) -> set[tuple]:
    """Like ``sequential_lists``, for the path of a bare nested dict (no module to ask).

    A ``layers`` level followed by an int index (not the leaf) is taken to be a
    ``Sequential``'s list.

    >>> sequential_lists_in(("layers", 0, "kernel"))
    {('layers',)}
    """
    return {path[:i + 1] for i in range(len(path) - 2)
            if path[i] == SEQUENTIAL_LIST and isinstance(path[i + 1], int)}


def torch_name(path: tuple, hidden: Container[tuple]) -> str:
    """PyTorch's dotted name of an NNX ``path``, leaving out the levels in ``hidden``.

    Args:
      path: an NNX path of strings and ints.
      hidden: path prefixes that PyTorch does not have (``sequential_lists``).

    Returns:
      The dotted name, e.g. ``layers.0.kernel`` (``""`` for the root).
    """
    return ".".join(str(e) for i, e in enumerate(path) if path[:i + 1] not in hidden)


def part_key(part: str | int) -> tuple:
    """Sort key of one name part: indices first, numerically, then names alphabetically.

    >>> sorted(["10", "fc", "2"], key=part_key)
    ['2', '10', 'fc']
    """
    if isinstance(part, int) or str(part).isdigit():
        return (0, int(part), "")
    return (1, 0, str(part))
