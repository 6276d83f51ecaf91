"""Read and write state dict files: ``.safetensors`` (numpy API) and ``.pt`` (never unpickled)."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from .. import _fs
from ._state_dict import (
    _fresh,
    _import_torch,
    _is_train_state,
    _to_numpy,
    to_torch_state_dict,
)

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# The safetensors dtypes numpy reads (BF16 through ml_dtypes, which JAX brings); the F8 and
# sub-byte ones fail inside safetensors.numpy with "module 'numpy' has no attribute ...".
SAFETENSORS_DTYPES = ("BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16",
                      "BF16", "F32", "F64")
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit


def _sniff(file: Path) -> str:
    """What ``file``'s first bytes say it is, whatever its name.

    Returns:
      ``"zip"`` (``torch.save``'s format), ``"pickle"`` (its legacy format),
      ``"tar"`` (its oldest), ``"safetensors"`` (an 8-byte header length, then
      ``{``), ``"empty"``, or ``""`` for none of these.
    """
    with open(file, "rb") as f:
        head = f.read(264)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # pickle protocol 2-5
        return "pickle"
    if head[257:262] == b"ustar":
        return "tar"
    n = int.from_bytes(head[:8], "little")
    if len(head) > 8 and head[8:9] == b"{" and 2 <= n <= file.stat().st_size - 8:
        return "safetensors"
    return ""


def _check_safetensors(file: Path, shown: str) -> None:
    """Refuse, saying what it is, a file named ``.safetensors`` that is not one or holds a
    dtype numpy cannot read; a header that does not parse is left to the reader."""
    kind = _sniff(file)
    if kind in ("zip", "pickle", "tar"):
        what = "a zip archive" if kind == "zip" else f"a {kind} file"
        raise ValueError(f"{shown}: not a safetensors file: it looks like a PyTorch file "
                         f"({what}): rename it to {Path(shown).stem}.pt")
    if kind != "safetensors":
        return
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > _SAFETENSORS_MAX_HEADER:
            return
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return
    if not isinstance(header, dict):
        return
    for name, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) and name != "__metadata__" else None
        if isinstance(dtype, str) and dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{shown}: tensor {name!r} has dtype {dtype}, which is not "
                             f"supported (jaxnet reads {', '.join(SAFETENSORS_DTYPES)}); save "
                             f"it as float32 in PyTorch: {{k: v.float() for k, v in sd.items()}}")


def _check_torch_file(file: Path, shown: str) -> None:
    """Refuse, saying what it is, a file named ``.pt`` that ``torch.load`` could not read."""
    kind = _sniff(file)
    if kind == "empty":
        raise ValueError(f"{shown}: not a PyTorch file (an empty file)")
    if kind == "safetensors":
        raise ValueError(f"{shown}: not a PyTorch file: it looks like a safetensors file: "
                         f"rename it to {Path(shown).stem}{SAFETENSORS_SUFFIX}")
    if kind == "":
        raise ValueError(f"{shown}: not a PyTorch file (no zip archive / pickle header)")


def _import_safetensors(why: str):
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError(f"{why} needs the safetensors package: pip install "
                          f"'jaxnet-course[interop]'") from None
    return st


def _kind(path: str | os.PathLike, name: str) -> str:
    """``"safetensors"`` or ``"torch"``, by the suffix of ``path`` (as the user gave it)."""
    suffix = Path(path).suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    raise ValueError(f"{name}: expected a {SAFETENSORS_SUFFIX} or {'/'.join(TORCH_SUFFIXES)} "
                     f"file, got {os.fspath(path)!r}")


def _flat_tensors(obj: Any, shown: str, key: str | None) -> dict[str, np.ndarray]:
    """The ``{name: array}`` dict inside what ``torch.load`` returned."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            keys = sorted(map(str, obj)) if isinstance(obj, Mapping) else []
            raise ValueError(f"key: {shown} has no entry {key!r}; its top-level keys: {keys}")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{shown}: expected a state dict (a dict of tensors, as "
                         f"torch.save(model.state_dict(), path) writes), got "
                         f"{type(obj).__name__}")
    out, nested, other = {}, [], []
    for k, v in obj.items():
        array = _to_numpy(v)
        if array is not None and isinstance(k, str):
            out[k] = array
        elif isinstance(v, Mapping):
            nested.append(str(k))
        else:
            other.append(f"{k!r} ({type(v).__name__})")
    if nested:
        raise ValueError(f"{shown}: holds a training checkpoint, not a state dict: its "
                         f"entries {nested} are dicts; pass key= (--key) with the one holding "
                         f"the model's tensors, e.g. key={nested[0]!r}")
    if other:
        raise ValueError(f"{shown}: expected a dict of tensors; these entries are not: "
                         + ", ".join(other))
    return out


def _refusal(e: BaseException) -> str:
    """What torch refused, without its advice to allowlist it."""
    text = str(e)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it names {found.group(1)}, which weights_only=True does not allow"
    # torch's own advice (re-run with weights_only=False) would run the file's code: never
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and "weights_only" not in ln and "arbitrary code" not in ln]
    found = [ln for ln in lines if ln.startswith("WeightsUnpickler error")]
    return (found or lines or [f"torch.load(weights_only=True) refused it: "
                               f"{type(e).__name__}"])[0]


def load(path, *, key: str | None = None) -> dict[str, np.ndarray]:
    """Read a state dict from a ``.safetensors`` or ``.pt``/``.pth``/``.bin`` file.

    ``.safetensors`` is read with the ``safetensors`` package's numpy API (no
    PyTorch needed). PyTorch files are read only with ``torch.load(path,
    weights_only=True, map_location="cpu")``: a file that holds anything but
    tensors and plain containers (for example a pickled model, or code) is
    refused without running it. There is no fallback to full unpickling.

    Args:
      path: the file (any path: relative, ``~``...).
      key: for a training checkpoint saved as a dict (``{"epoch": …,
        "model_state_dict": …}``), the entry holding the state dict.

    Returns:
      ``{pytorch_key: numpy array}`` (bfloat16 tensors become float32, exactly).

    Raises:
      FileNotFoundError; ImportError (PyTorch or safetensors missing, saying
      what to install); ValueError (not a state dict, or refused as unsafe).

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "layer.safetensors")
    >>> _ = save(file, {"weight": np.ones((3, 2), np.float32), "bias": np.zeros(3, np.float32)})
    >>> {k: (v.shape, str(v.dtype)) for k, v in sorted(load(file).items())}
    {'bias': ((3,), 'float32'), 'weight': ((3, 2), 'float32')}
    """
    file, shown = _fs.user_path(path, name="path")
    kind = _kind(shown, "path")
    if not file.is_file():
        raise FileNotFoundError(f"path: {shown} does not exist or is not a file")
    if kind == "safetensors":
        if key is not None:
            raise ValueError(f"key: only for PyTorch files; {shown} is a flat safetensors "
                             f"file (key={key!r})")
        st = _import_safetensors(f"reading {shown}")
        _check_safetensors(file, shown)
        try:
            arrays = st.load_file(file, backend="pread")
        except Exception as e:  # the Rust reader raises its own error types
            raise ValueError(f"{shown}: not a readable safetensors file ({e})") from None
        return {k: np.array(v) for k, v in arrays.items()}
    _check_torch_file(file, shown)
    torch = _import_torch(f"reading the PyTorch file {shown}")
    try:
        with warnings.catch_warnings():
            # Said of files pickled with protocol > 2 just before they are refused or read.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(file, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{shown}: refused: it holds Python objects besides tensors ({_refusal(e)}); "
            f"jaxnet reads PyTorch files only with torch.load(weights_only=True), which runs "
            f"no code from the file. If you trust the file, load it in PyTorch and save "
            f"model.state_dict() (or a .safetensors file) instead") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{shown}: not a readable PyTorch file ({_refusal(e)})") from None
    return _flat_tensors(obj, shown, key)


def _torch_save(torch, tensors: dict, tmp: Path) -> None:
    # Through a file object: torch.save names the archive after a path's stem, and the
    # temporary file's name is no valid archive name.
    with open(tmp, "wb") as f:
        torch.save(tensors, f)


def _exists(shown: str) -> str:
    return f"path: {shown} already exists; pass overwrite=True (--overwrite) to replace it"


def _write(target: Path, shown: str, write: Callable[[Path], None], overwrite: bool) -> None:
    """``_fs.write_atomic``, saying what to do if ``target`` appeared meanwhile."""
    try:
        _fs.write_atomic(target, write, overwrite=overwrite)
    except FileExistsError:
        raise FileExistsError(_exists(shown)) from None


def save(path, state_dict: Any, *, overwrite: bool = False) -> Path:
    """Write a state dict (or a model's, via ``to_torch_state_dict``) to a file.

    ``.safetensors`` needs only the ``safetensors`` package (numpy API);
    ``.pt``/``.pth``/``.bin`` need PyTorch (``torch.save`` of a dict of
    tensors, which ``torch.load(weights_only=True)`` reads). Written atomically.

    Args:
      path: the file to write; its folder must exist.
      state_dict: ``{pytorch_key: array or tensor}``, a jaxnet model or a ``TrainState``.
      overwrite: replace an existing file (otherwise ``FileExistsError``).

    Returns:
      The file's absolute path.

    >>> import tempfile
    >>> from jaxnet import nn
    >>> file = save(tempfile.mkdtemp() + "/mlp.safetensors", nn.MLP(4, [3], 2, rngs=0))
    >>> sorted(load(file))
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    target, shown = _fs.user_path(path, name="path")
    kind = _kind(shown, "path")
    if isinstance(state_dict, nnx.Module) or _is_train_state(state_dict):
        state_dict = to_torch_state_dict(state_dict)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a dict of arrays or a jaxnet model, got "
                        f"{type(state_dict).__name__}")
    arrays, bad = {}, []
    for k, v in state_dict.items():
        array = _to_numpy(v)
        if not isinstance(k, str) or array is None:
            bad.append(f"{k!r} ({type(v).__name__})")
        else:
            arrays[k] = _fresh(array)
    if bad:
        raise ValueError("state_dict: expected string keys and array values; not: "
                         + ", ".join(bad))
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(_exists(shown))
    if not target.parent.is_dir():
        raise FileNotFoundError(f"path: cannot write {shown}: its folder does not exist")
    if kind == "safetensors":
        st = _import_safetensors(f"writing {shown}")
        data = st.save(arrays, metadata={"format": "pt"})
        _write(target, shown, lambda tmp: tmp.write_bytes(data), overwrite)
    else:
        torch = _import_torch(f"writing the PyTorch file {shown}")
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        _write(target, shown, lambda tmp: _torch_save(torch, tensors, tmp), overwrite)
    return target
