"""``jaxnet.load``: a trained model back into a model object for prediction, in one call.

What ``torch.load`` + ``model.load_state_dict`` do in the course, for every
file a jaxnet user has: a run folder of ``jaxnet train mnist --checkpoint-dir``
or ``fit(..., checkpoint_dir=)`` (a whole ``TrainState``: the parameters and
BatchNorm statistics are read out of it), one ``step_…`` folder of one, a
folder written by ``checkpoint.save(folder, nn.state_dict(model), step=n)``,
a ``.safetensors`` file or a PyTorch ``.pt``/``.pth``/``.bin`` state dict
(through ``jaxnet.interop``, never unpickled).

Contract: verified like ``checkpoint.restore`` (every file's digest); the
values go into ``into`` in place (cast to its float dtypes, as PyTorch's
``load_state_dict`` copies); a path that does not fit the model says what it
holds and what ``into`` is. Sits above ``checkpoint``, ``interop`` and ``nn``;
knows nothing of ``train`` or MNIST.
"""

from __future__ import annotations

import math
import os
import re

import jax
import numpy as np
from flax import nnx

from . import _fs, checkpoint, interop, nn
from ._tree import leaf_paths
from .checkpoint._layout import MANIFEST, paths, resolve
from .checkpoint._manifest import read_manifest
from .interop._files import SAFETENSORS_SUFFIX, TORCH_SUFFIXES

__all__ = ["load"]

_STEP_FOLDER = re.compile(r"step_([0-9]{8,18})", re.ASCII)
_SLACK = 16  # a checkpoint may hold this many times the model's bytes (Adam holds 3x) + 1 MiB


@jax.tree_util.register_pytree_with_keys_class
class _Saved:
    """A checkpoint's arrays in its manifest's order, each keyed by its saved path, so that
    ``checkpoint.restore`` (which checks every path, shape and dtype) can read any
    checkpoint without knowing the optimizer that wrote it."""

    def __init__(self, names: tuple[str, ...], arrays: list):
        self.names, self.arrays = names, arrays

    def tree_flatten_with_keys(self):
        keys = [jax.tree_util.DictKey(n) for n in self.names]
        return list(zip(keys, self.arrays, strict=True)), self.names

    def tree_flatten(self):
        return self.arrays, self.names

    @classmethod
    def tree_unflatten(cls, names, arrays):
        return cls(names, list(arrays))


def _describe(items: list[tuple[str, tuple]]) -> str:
    """``Linear layers 784-512-256-10 (669,706 values)``, from ``(path, shape)`` pairs."""
    kernels = [s for p, s in items if p.rsplit("/", 1)[-1] == "kernel" and len(s) == 2]
    size = sum(math.prod(s) for _, s in items)
    if kernels and all(a[1] == b[0] for a, b in zip(kernels, kernels[1:], strict=False)):
        sizes = (kernels[0][0], *(k[1] for k in kernels))
        arch = "Linear layers " + "-".join(map(str, sizes))
    elif kernels:
        arch = "Linear layers " + ", ".join(f"{a}x{b}" for a, b in kernels)
    else:
        arch = f"{len(items)} arrays"
    return f"{arch} ({size:,} values)"


def _find_checkpoint(folder, shown: str, step: int | None) -> tuple[str, int]:
    """``(checkpoint folder as shown, step)`` for a run folder or one of its step folders."""
    if checkpoint.all_steps(folder):
        return shown, resolve(folder, shown, step)
    match = _STEP_FOLDER.fullmatch(folder.name)
    if match and (folder / MANIFEST).is_file() and int(match[1]) in checkpoint.all_steps(
            folder.parent):
        if step is not None and step != int(match[1]):
            raise ValueError(f"step: {shown} is the checkpoint of step {int(match[1])}, got "
                             f"step={step}; pass its run folder to choose another step")
        return os.path.dirname(shown.rstrip("/" + os.sep)) or ".", int(match[1])
    runs = sorted(c.name for c in folder.iterdir() if c.is_dir() and checkpoint.all_steps(c))
    inside = f"; its subfolders {runs[:5]} hold checkpoints: pass one of them" if runs else ""
    raise ValueError(f"path: {shown} is a folder that holds no jaxnet checkpoint (no complete "
                     f"step_NNNNNNNN folder with a {MANIFEST}){inside}; expected a checkpoint "
                     f"folder, a .safetensors or a .pt file")


def _plan(leaves: list[dict], want: list[str]) -> tuple[str, dict[str, str]]:
    """``(what the checkpoint holds, {model path: saved path})`` for the model's paths."""
    saved = [leaf["path"] for leaf in leaves]
    if any(p.startswith("params/") for p in saved):
        kind = "training checkpoint" if "opt_state" in {p.split("/")[0] for p in saved} \
            else "checkpoint of params and model_state"
        names = set(saved)
        mapping = {w: next((f"{pre}/{w}" for pre in ("params", "model_state")
                            if f"{pre}/{w}" in names), f"params/{w}") for w in want}
        return kind, mapping
    return "state dict checkpoint", {w: w for w in want}


def _model_part(leaves: list[dict], kind: str) -> list[tuple[str, tuple]]:
    """The ``(path, shape)`` pairs of the model inside a checkpoint (prefix removed)."""
    out = []
    for leaf in leaves:
        head, _, rest = leaf["path"].partition("/")
        if kind == "state dict checkpoint":
            out.append((leaf["path"], tuple(leaf["shape"])))
        elif head in ("params", "model_state") and rest:
            out.append((rest, tuple(leaf["shape"])))
    return out


def _from_checkpoint(folder, shown: str, into: nnx.Module, step: int | None) -> None:
    directory, step = _find_checkpoint(folder, shown, step)
    manifest = read_manifest(*paths(directory), step)
    leaves, meta = manifest["leaves"], manifest["metadata"]
    current = nn.state_dict(into)
    want, arrays = leaf_paths(current), jax.tree.leaves(current)
    kind, mapping = _plan(leaves, want)
    by_path = {leaf["path"]: leaf for leaf in leaves}
    model_part = _model_part(leaves, kind)
    problems = []
    for w, a in zip(want, arrays, strict=True):
        leaf = by_path.get(mapping[w])
        if leaf is None:
            problems.append(f"{w} is missing there")
        elif tuple(leaf["shape"]) != np.shape(a):
            problems.append(f"{w} is {tuple(leaf['shape'])} there, {np.shape(a)} in into=")
        elif leaf["dtype"] != str(a.dtype) and not (
                np.issubdtype(a.dtype, np.floating) and "float" in leaf["dtype"]):
            problems.append(f"{w} is {leaf['dtype']} there, {a.dtype} in into=")
    if len(model_part) > len(want):
        problems.append(f"it has {len(model_part)} model arrays, into= has {len(want)}")
    if problems:
        where = f"{shown} holds a {kind}" + (f" (step {step}, epoch {meta['epoch']})"
                                             if "epoch" in meta else f" (step {step})")
        config = meta.get("config")
        hint = (f"; its saved config: {str(config)[:300]}" if isinstance(config, dict) else "")
        raise checkpoint.CheckpointMismatchError(
            f"path: {where} of {_describe(model_part)}; into= is a {type(into).__name__} of "
            f"{_describe(list(zip(want, map(np.shape, arrays), strict=True)))}: build into= "
            f"with the architecture it was trained with{hint} ({'; '.join(problems[:3])})")
    total = sum(math.prod(leaf["shape"]) * np.dtype(_dtype(leaf["dtype"])).itemsize
                for leaf in leaves)
    model_bytes = sum(np.size(a) * a.dtype.itemsize for a in arrays)
    if total > _SLACK * model_bytes + (1 << 20):
        raise checkpoint.CheckpointMismatchError(
            f"path: {shown} holds {total:,} bytes of arrays, far more than a checkpoint of "
            f"into= ({model_bytes:,} bytes of weights); refusing to read it")
    like = _Saved(tuple(by_path), [np.zeros(leaf["shape"], _dtype(leaf["dtype"]))
                                   for leaf in leaves])
    restored = checkpoint.restore(directory, like=like, step=step)
    values = dict(zip(restored.names, restored.arrays, strict=True))
    tree = jax.tree.unflatten(jax.tree.structure(current),
                              [np.asarray(values[mapping[w]]).astype(a.dtype)
                               for w, a in zip(want, arrays, strict=True)])
    nn.load_state_dict(into, tree)


def _dtype(name: str):
    return jax.numpy.dtype(name)  # knows bfloat16, which numpy alone does not


def _from_file(shown: str, into: nnx.Module, key: str | None) -> None:
    state_dict = interop.load(shown, key=key)
    try:
        loaded = interop.from_torch_state_dict(state_dict, into)
    except interop.StateDictMismatchError as e:
        raise interop.StateDictMismatchError(
            f"path: {shown} does not fit into= ({type(into).__name__}): {e}",
            missing=e.missing, unexpected=e.unexpected, mismatched=e.mismatched,
            not_arrays=e.not_arrays) from None
    nn.load_state_dict(into, nn.state_dict(loaded))


def load(path, *, into: nnx.Module, step: int | None = None, key: str | None = None):
    """Load trained weights into ``into`` for prediction: ``torch.load`` + ``load_state_dict``.

    Accepts what training leaves behind: a run folder of ``jaxnet train mnist
    --checkpoint-dir`` or ``fit(..., checkpoint_dir=)`` (its newest step, or
    ``step``), one ``step_…`` folder of it, a folder written by
    ``checkpoint.save(folder, nn.state_dict(model), step=n)``, a
    ``.safetensors`` file, or a PyTorch ``.pt``/``.pth``/``.bin`` state dict
    (read with ``torch.load(weights_only=True)``). The parameters and the
    BatchNorm running statistics are written into ``into`` in place.

    Args:
      path: any path (relative, ``~``…).
      into: a model of the architecture that was trained (e.g.
        ``mnist.build_model(config)``); its values are replaced.
      step: which checkpoint of a run folder (default: the newest).
      key: for a ``.pt`` training checkpoint saved as a dict
        (``{"model_state_dict": …}``), the entry holding the state dict.

    Returns:
      ``into``, holding the loaded values.

    Raises:
      FileNotFoundError; ``checkpoint.CheckpointMismatchError`` or
      ``interop.StateDictMismatchError`` (both ``ValueError`` subclasses) saying what
      the path holds and what ``into`` is; ``ValueError`` for a path that is
      none of the above; ``checkpoint.CheckpointCorruptError`` for damaged files.

    >>> import os, tempfile
    >>> from jaxnet import checkpoint, nn
    >>> trained = nn.MLP(4, [3], 2, rngs=0)
    >>> folder = os.path.join(tempfile.mkdtemp(), "saved")
    >>> _ = checkpoint.save(folder, nn.state_dict(trained), step=1)
    >>> model = load(folder, into=nn.MLP(4, [3], 2, rngs=1))
    >>> bool((model[0].kernel[...] == trained[0].kernel[...]).all())
    True
    >>> load(folder, into=nn.MLP(4, [5], 2, rngs=1))
    Traceback (most recent call last):
    ...
    jaxnet.checkpoint.CheckpointMismatchError: path: .../saved holds a state dict checkpoint \
(step 1) of Linear layers 4-3-2 (23 values); into= is a MLP of Linear layers 4-5-2 (37 values): ...
    """
    if not isinstance(into, nnx.Module):
        raise TypeError(f"into: expected the model to load into (an nn.Module of the trained "
                        f"architecture), got {type(into).__name__}")
    file, shown = _fs.user_path(path, name="path")
    if file.is_dir():
        if key is not None:
            raise ValueError(f"key: only for a PyTorch file; {shown} is a folder (key={key!r})")
        _from_checkpoint(file, shown, into, step)
        return into
    if not file.exists():
        raise FileNotFoundError(f"path: {shown} does not exist")
    if file.suffix.lower() not in (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES):
        raise ValueError(f"path: {shown} is not a jaxnet checkpoint folder, "
                         f"{SAFETENSORS_SUFFIX} or .pt file; save a model with "
                         f"checkpoint.save(folder, nn.state_dict(model), step=n) or "
                         f"interop.save(path, model)")
    if step is not None:
        raise ValueError(f"step: only for a checkpoint folder; {shown} is a file (step={step})")
    _from_file(shown, into, key)
    return into
