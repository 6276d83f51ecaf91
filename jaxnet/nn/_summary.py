"""``summary(model, input_shape)``: ``print(model)`` plus torchinfo's table of shapes and counts."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as SequenceABC
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._checks import positive_int
from .._torchnames import SEQUENTIAL_LIST, part_key, sequential_lists, torch_name
from ._activations import LogSoftmax, Softmax
from ._batch_norm import BatchNorm1d
from ._dropout import Dropout
from ._functional import _set_mode, _split, count_params


def _describe(module: nnx.Module) -> str:
    if isinstance(module, nnx.Linear):
        return f"Linear({module.in_features}, {module.out_features})"
    if isinstance(module, BatchNorm1d):
        return f"BatchNorm1d({module.num_features})"
    if isinstance(module, Dropout | Softmax | LogSoftmax):
        return repr(module)
    return type(module).__name__


def _shapes(out: Any) -> str:
    shapes = [tuple(x.shape) for x in jax.tree.leaves(out) if hasattr(x, "shape")]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _record_calls(modules: list[nnx.Module], shapes: dict[int, str]):
    """Wrap the ``__call__`` of the modules' classes so each records its first output shape.

    ``shapes`` fills in call order (dicts keep insertion order). The same
    technique as ``nnx.tabulate``; the returned function restores the classes.
    """
    targets = {id(m) for m in modules}
    patched = []
    for cls in {type(m) for m in modules}:
        if not any("__call__" in vars(base) for base in cls.__mro__[:-1]):
            continue  # containers such as nnx.List are not called
        original = cls.__call__
        had_own = "__call__" in cls.__dict__

        def wrapper(self, *args, __original=original, **kwargs):
            first = id(self) in targets and id(self) not in shapes
            if first:
                shapes[id(self)] = "--"  # reserve the slot: parents are called first
            out = __original(self, *args, **kwargs)
            if first:
                shapes[id(self)] = _shapes(out)
            return out

        cls.__call__ = wrapper
        patched.append((cls, original, had_own))

    def restore():
        for cls, original, had_own in patched:
            if had_own:
                cls.__call__ = original
            else:
                del cls.__call__

    return restore


def _record_function(fn: Callable, key: tuple, shapes: dict) -> Callable:
    """``fn`` that also records its first output shape in ``shapes[key]`` (call order)."""
    def recorded(*args, **kwargs):
        out = fn(*args, **kwargs)
        shapes.setdefault(key, _shapes(out))
        return out

    return recorded


def summary(model: nnx.Module, input_shape: SequenceABC[int], *, dtype=jnp.float32,
            print_fn: Callable[[str], Any] | None = print) -> str | None:
    """Print a table of every layer: name, type, output shape, parameters (or return it).

    Like ``print(model)`` plus torchinfo's ``summary``: nested modules are
    indented under their parent, with PyTorch-style names (``layers.0``).
    Shapes are computed abstractly in evaluation mode (nothing runs, nothing
    changes). ``input_shape`` includes the batch dimension. ``Params`` counts a
    layer's own parameters (``--``: none; a container's are in its children's rows).
    A plain function in a ``Sequential`` (``jax.nn.relu``) is a row named by its
    index and typed by its name, as ``print(model)`` shows it.

    It prints or returns, never both, so a notebook or REPL shows the table
    once: like Keras's ``model.summary()`` it prints and returns ``None``;
    with ``print_fn=None`` it returns the text without printing (for
    ``print(...)``, a file or a test).

    Args:
      model: an ``nn.Module``.
      input_shape: the input's shape, batch dimension included, e.g. ``(64, 784)``.
      dtype: the input's dtype.
      print_fn: called with the table (default ``print``); ``None`` to return it instead.

    Returns:
      ``None`` after printing; with ``print_fn=None``, the table as one string
      (lines separated by ``\\n``).

    >>> from jaxnet.nn import MLP
    >>> text = summary(MLP(784, [512, 256], 10, rngs=0), (64, 784), print_fn=None)
    >>> print(text.splitlines()[5])
      0        Linear(784, 512)  (64, 512)   401,920
    >>> print(text.splitlines()[-2])
    Total params: 535,818
    >>> summary(MLP(2, [3], 1, rngs=0), (1, 2))  # prints once, returns None
    MLP (input (1, 2))
    ...
    Total params: 13
    Non-trainable state: 0
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, SequenceABC):
        raise TypeError(f"input_shape: expected a tuple of ints with the batch dimension, e.g. "
                        f"(64, 784), got {input_shape!r}")
    input_shape = tuple(positive_int("input_shape", d) for d in input_shape)
    merge, params, state = _split(model)
    modules = dict(nnx.iter_modules(model))
    # Sequential keeps its layers in an nnx.List: PyTorch names them "layers.0", not
    # "layers.layers.0", so that list is neither a row nor a part of the names.
    hidden = sequential_lists(modules)
    # Plain functions in a Sequential: path -> the name print(model) shows.
    functions = {p + (SEQUENTIAL_LIST, i): getattr(f, "__name__", type(f).__name__)
                 for p, m in modules.items() if isinstance(m, nnx.Sequential)
                 for i, f in enumerate(m.layers) if not isinstance(f, nnx.Module)}
    shapes: dict[Any, str] = {}
    rows_by_path: dict[tuple, Any] = {}

    def traced(params, state, x):
        module = merge(params, state)
        _set_mode(module, False, None)
        found = [(p, m) for p, m in nnx.iter_modules(module) if p not in hidden]
        rows_by_path.update((p, id(m)) for p, m in found)
        rows_by_path.update((p, p) for p in functions)  # a function's key: its path
        by_path = dict(found)
        for path in functions:
            layers = by_path[path[:-2]].layers
            layers[path[-1]] = _record_function(layers[path[-1]], path, shapes)
        restore = _record_calls([m for _, m in found], shapes)
        try:
            return module(x)
        finally:
            restore()

    try:
        jax.eval_shape(traced, params, state, jax.ShapeDtypeStruct(input_shape, dtype))
    except (TypeError, ValueError) as error:  # shapes that do not fit the layers
        raise ValueError(f"input_shape: {type(model).__name__} cannot take an input of shape "
                         f"{input_shape}: {str(error).splitlines()[0]}") from error

    own: dict[tuple, int] = {}
    module_paths = set(rows_by_path)
    for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        owner = max((p for p in module_paths if path[:len(p)] == p), key=len)
        own[owner] = own.get(owner, 0) + int(np.size(leaf))

    # Siblings in the order they were first called (PyTorch/torchinfo order), then by name.
    called = {ident: i for i, ident in enumerate(shapes)}

    def order(path: tuple) -> list:
        return [(called.get(rows_by_path.get(path[:i + 1]), len(called)), part_key(e))
                for i, e in enumerate(path)]

    rows = []
    for path in sorted(rows_by_path, key=order):
        depth = sum(1 for p in module_paths if p != path and path[:len(p)] == p)
        name = torch_name(path, hidden) or type(model).__name__
        n = own.get(path, 0)
        count = f"{n:,}" if n else "--"
        kind = functions[path] if path in functions else _describe(modules[path])
        rows.append(("  " * depth + name, kind, shapes.get(rows_by_path[path], "--"), count))
    header = ("Layer", "Type", "Output shape", "Params")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(4)]
    w0, w1, w2, w3 = widths
    fmt = f"{{:<{w0}}}  {{:<{w1}}}  {{:<{w2}}}  {{:>{w3}}}"
    rule = "-" * (sum(widths) + 6)
    n_state = int(sum(np.size(x) for x in jax.tree.leaves(state)))
    lines = [f"{type(model).__name__} (input {tuple(input_shape)})", rule, fmt.format(*header),
             rule, *(fmt.format(*r).rstrip() for r in rows), rule,
             f"Total params: {count_params(model):,}",
             f"Non-trainable state: {n_state:,}"]
    text = "\n".join(lines)
    if print_fn is None:
        return text
    print_fn(text)
    return None
