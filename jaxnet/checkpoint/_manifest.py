"""The manifest: its schema, the size and sha256 of every file, and verification.

``manifest.json`` = ``{"format", "step", "leaves": [{path, shape, dtype,
sha256}], "files": {rel: {size, sha256}}, "metadata"}``. Reading one is
size- and depth-capped and checks every key and type; any deviation, and any
missing, foreign, resized or changed file, is a ``CheckpointCorruptError``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _fs
from .._checks import _is_int
from .._tree import leaf_paths
from ._errors import CheckpointCorruptError, CheckpointMismatchError, CheckpointNotFoundError, why
from ._layout import MANIFEST, step_name

FORMAT = "jaxnet.checkpoint/2"  # files carry their size; /1 (digests only) is still read


_FORMATS = ("jaxnet.checkpoint/1", FORMAT)


_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)


_DTYPE = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)


MAX_MANIFEST_BYTES = 64 << 20  # a manifest is read whole only below this size


MAX_JSON_DEPTH = 64  # nesting of a manifest (metadata included)


_MAX_FILES = 100_000  # entries walked in one checkpoint


def _reason(e: OSError | ValueError) -> str:
    """An OS error's one line, or a primitive's own ``ValueError`` text."""
    return why(e) if isinstance(e, OSError) else str(e)


def json_depth(obj: Any) -> int:
    """Nesting depth of a JSON value, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def check_metadata(metadata: Any) -> None:
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict of JSON values or None, got "
                        f"{type(metadata).__name__}")
    try:
        json.dumps(metadata or {})
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata: expected a dict of JSON values, got one that JSON "
                        f"cannot hold ({e})") from None
    if json_depth(metadata or {}) > MAX_JSON_DEPTH - 2:
        raise ValueError(f"metadata: expected at most {MAX_JSON_DEPTH - 2} levels of nesting, "
                         f"got more")


def _walk(root: Path) -> dict[str, os.stat_result]:
    """``lstat`` of every non-folder entry under ``root`` (links are not followed)."""
    out: dict[str, os.stat_result] = {}
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = f"{prefix}{entry.name}"
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((Path(entry.path), rel + "/"))
                elif rel != MANIFEST:
                    out[rel] = st
                if len(out) + len(stack) > _MAX_FILES:
                    raise ValueError(f"more than {_MAX_FILES} files")
    return out


def _sha256_file(path: Path, size: int) -> str:
    fd = _fs.open_regular(path, size=size)
    h = hashlib.sha256()
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def file_records(root: Path) -> dict[str, dict]:
    records = {}
    for rel, st in sorted(_walk(root).items()):
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{rel} is not a regular file")
        records[rel] = {"size": st.st_size, "sha256": _sha256_file(root / rel, st.st_size)}
    return records


def schema_error(shown_step: str, what: str) -> CheckpointCorruptError:
    return CheckpointCorruptError(f"checkpoint {shown_step}: {MANIFEST} is malformed: {what}")


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expect(shown_step: str, where: str, value: Any, kind: type | tuple) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise schema_error(shown_step, f"{where} must be {want}, got {type_name(value)}")
    return value


def _valid_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and "\x00" not in rel and all(p not in ("", ".", "..") for p in parts)


def _validate_manifest(obj: Any, shown_step: str, step: int) -> dict:
    """Check every key and type of a manifest; return it with ``files`` as
    ``{rel: (size or None, sha256)}``. Any deviation is a ``CheckpointCorruptError``."""
    _expect(shown_step, "the manifest", obj, dict)
    fmt = obj.get("format")
    if fmt not in _FORMATS:
        raise CheckpointCorruptError(f"checkpoint {shown_step}: {MANIFEST} is not a {FORMAT} "
                                     f"manifest (format {fmt!r})")
    required = {"format", "step", "leaves", "files", "metadata"}
    missing, extra = required - set(obj), set(obj) - required
    if missing or extra:
        raise schema_error(shown_step, f"missing keys {sorted(missing)}" if missing
                            else f"unexpected keys {sorted(extra)}")
    if _expect(shown_step, "'step'", obj["step"], int) != step:
        raise schema_error(shown_step, f"'step' is {obj['step']}, but the folder is step {step}")
    for i, leaf in enumerate(_expect(shown_step, "'leaves'", obj["leaves"], list)):
        where = f"leaves[{i}]"
        _expect(shown_step, where, leaf, dict)
        if set(leaf) != {"path", "shape", "dtype", "sha256"}:
            raise schema_error(shown_step, f"{where} must have the keys path, shape, dtype and "
                                            f"sha256, got {sorted(leaf)}")
        _expect(shown_step, f"{where}.path", leaf["path"], str)
        shape = _expect(shown_step, f"{where}.shape", leaf["shape"], list)
        if len(shape) > 32 or not all(_is_int(d) and 0 <= d < 2**62 for d in shape):
            raise schema_error(shown_step, f"{where}.shape must be a list of sizes, got "
                                            f"{str(shape)[:80]}")
        if not _DTYPE.fullmatch(_expect(shown_step, f"{where}.dtype", leaf["dtype"], str)):
            raise schema_error(shown_step, f"{where}.dtype is not a dtype: {leaf['dtype'][:40]!r}")
        if not _HEX64.fullmatch(_expect(shown_step, f"{where}.sha256", leaf["sha256"], str)):
            raise schema_error(shown_step, f"{where}.sha256 is not a sha256 digest")
    files = {}
    for rel, record in _expect(shown_step, "'files'", obj["files"], dict).items():
        if not _valid_rel(rel):
            raise schema_error(shown_step, f"'files' names an invalid path {rel[:80]!r}")
        if fmt == "jaxnet.checkpoint/1":
            size, digest = None, _expect(shown_step, f"files[{rel!r}]", record, str)
        else:
            _expect(shown_step, f"files[{rel!r}]", record, dict)
            if set(record) != {"size", "sha256"}:
                raise schema_error(shown_step, f"files[{rel!r}] must have the keys size and "
                                                f"sha256, got {sorted(record)}")
            size = _expect(shown_step, f"files[{rel!r}].size", record["size"], int)
            digest = _expect(shown_step, f"files[{rel!r}].sha256", record["sha256"], str)
            if size < 0:
                raise schema_error(shown_step, f"files[{rel!r}].size is negative")
        if not _HEX64.fullmatch(digest):
            raise schema_error(shown_step, f"files[{rel!r}] has no sha256 digest")
        files[rel] = (size, digest)
    _expect(shown_step, "'metadata'", obj["metadata"], dict)
    return {**obj, "files": files}


def read_manifest(path: Path, shown: str, step: int) -> dict:
    step_path, shown_step = path / step_name(step), os.path.join(shown, step_name(step))
    try:
        raw = _fs.read_bounded(step_path / MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"checkpoint {shown_step} was removed while being read "
                                      f"(pruned by another run?)") from None
    except (OSError, ValueError) as e:
        raise CheckpointCorruptError(f"checkpoint {shown_step}: unreadable {MANIFEST} "
                                     f"({_reason(e)})") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointCorruptError(f"checkpoint {shown_step}: unreadable {MANIFEST} "
                                     f"({type(e).__name__})") from None
    if json_depth(obj) > MAX_JSON_DEPTH:
        raise schema_error(shown_step, f"nested deeper than {MAX_JSON_DEPTH} levels")
    return _validate_manifest(obj, shown_step, step)


def verify_files(step_path: Path, shown_step: str, manifest: dict) -> None:
    """Every file is present, a regular file of the recorded size, and has its digest;
    sizes and types are checked for all files before any file is opened."""
    want = manifest["files"]
    try:
        have = _walk(step_path)
    except (OSError, ValueError) as e:
        raise CheckpointCorruptError(f"checkpoint {shown_step}: cannot list its files "
                                     f"({_reason(e)})") from None
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} is missing")
        if rel not in want:
            raise CheckpointCorruptError(f"checkpoint {shown_step}: foreign file {rel} "
                                         f"(not written by jaxnet); refusing to load")
        st, (size, _) = have[rel], want[rel]
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} is not a regular "
                                         f"file (a link, FIFO or device); refusing to open it")
        if size is not None and st.st_size != size:
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} is corrupt "
                                         f"(truncated or changed: {st.st_size} bytes, "
                                         f"expected {size})")
    for rel in sorted(want):
        try:
            digest = _sha256_file(step_path / rel, have[rel].st_size)
        except (OSError, ValueError) as e:
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} cannot be read "
                                         f"({_reason(e)})") from None
        if digest != want[rel][1]:
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} is corrupt "
                                         f"(truncated or changed: its sha256 differs)")


def _train_state_hint(saved: list, paths: list) -> str:
    """When a training run's checkpoint (a whole ``TrainState``) meets a model's state dict."""
    tops = {entry["path"].split("/")[0] for entry in saved}
    if {"params", "step"} <= tops and not any(p.startswith("params") for p in paths):
        return (" (it holds a whole training state: params, optimizer state, step; to put its "
                "weights into a model use jaxnet.load(path, into=model))")
    return ""


def check_like(shown_step: str, manifest: dict, like: Any) -> list:
    leaves = jax.tree.leaves(like)
    paths = leaf_paths(like)
    saved = manifest["leaves"]
    for i, (p, x) in enumerate(zip(paths, leaves, strict=False)):
        if i >= len(saved):
            raise CheckpointMismatchError(f"checkpoint {shown_step}: has no {p} (it holds "
                                          f"{len(saved)} arrays, like has {len(paths)})")
        s = saved[i]
        shape, dtype = list(np.shape(x)), str(jnp.asarray(x).dtype)
        if s["path"] != p:
            raise CheckpointMismatchError(f"checkpoint {shown_step}: structure differs at {p}: "
                                          f"the checkpoint has {s['path']} there"
                                          + _train_state_hint(saved, paths))
        if s["shape"] != shape or s["dtype"] != dtype:
            raise CheckpointMismatchError(
                f"checkpoint {shown_step}: {p} has shape {tuple(s['shape'])} {s['dtype']} in "
                f"the checkpoint but {tuple(shape)} {dtype} in like")
    if len(saved) > len(leaves):
        raise CheckpointMismatchError(f"checkpoint {shown_step}: holds "
                                      f"{saved[len(leaves)]['path']}, which like does not have")
    return leaves
