"""Save and restore training state: ``torch.save(state_dict)`` without pickle.

Layout of a checkpoint directory::

    DIR/step_00000003/arrays/...        arrays, written by orbax-checkpoint
    DIR/step_00000003/manifest.json     format, step, your metadata, and a
                                        sha256 of every array and every file

Guarantees:

* Atomic: a checkpoint is written into a temporary folder and renamed into
  place only when complete, so a kill at any moment leaves the previous
  checkpoints intact and a half-written one is never listed by ``all_steps``
  or ``latest_step``.
* Verified: ``restore`` checks every file's digest and rejects missing,
  changed or foreign files before reading any array, then checks every
  restored array's digest. Only arrays and JSON are read; nothing from the
  file is executed (no pickle).
* Checked against ``like``: structure, shapes and dtypes must match; the
  error names the first differing path with both values.
* Never overwritten: saving a step that exists raises ``CheckpointExistsError``.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> params = {"w": jnp.ones((2, 3))}
>>> _ = save(d, params, step=1)
>>> latest_step(d)
1
>>> restore(d, like=params)["w"].shape
(2, 3)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import non_negative_int
from ._tree import array_digest, leaf_paths

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "all_steps",
    "latest_step",
    "load_metadata",
    "restore",
    "save",
]

FORMAT = "jaxnet.checkpoint/1"
_MANIFEST = "manifest.json"
_PREFIX = "step_"


class CheckpointError(Exception):
    """Base class of checkpoint errors."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No (such) checkpoint in the directory."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's files are truncated, changed, missing or foreign."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint does not fit the ``like`` template (structure, shape or dtype)."""


class CheckpointExistsError(CheckpointError, FileExistsError):
    """Refusing to overwrite an existing checkpoint."""


def _step_dir(directory: Path, step: int) -> Path:
    return directory / f"{_PREFIX}{step:08d}"


def all_steps(directory) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending ([] if none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = []
    for child in directory.iterdir():
        name = child.name
        if name.startswith(_PREFIX) and name[len(_PREFIX):].isdigit() \
                and (child / _MANIFEST).is_file():
            steps.append(int(name[len(_PREFIX):]))
    return sorted(steps)


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step, or ``None``."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def _file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the manifest itself."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path == root / _MANIFEST or path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file():
            out[rel] = "not a regular file"
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out[rel] = h.hexdigest()
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_tmp(directory: Path) -> None:
    for child in directory.glob(".tmp-*"):
        pid = child.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(child, ignore_errors=True)
        except PermissionError:
            pass


def save(directory, state: Any, *, step: int, metadata: dict | None = None,
         keep: int | None = None) -> Path:
    """Write ``state`` (any pytree of arrays) as checkpoint ``step`` in ``directory``.

    Args:
      directory: folder holding the checkpoints (created if missing).
      state: a pytree of arrays, e.g. a ``TrainState`` or a params dict.
      step: non-negative int identifying the checkpoint; never overwritten.
      metadata: JSON-serialisable dict stored alongside (epoch, config...).
      keep: if given, delete all but the newest ``keep`` checkpoints afterwards
        (after the new one is committed: a kill in between leaves ``keep + 1``,
        which the next save prunes, rather than ever fewer than ``keep``).

    Returns:
      The checkpoint's folder.
    """
    import orbax.checkpoint as ocp

    step = non_negative_int("step", step)
    if keep is not None and (not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep: expected a positive int or None, got {keep!r}")
    directory = Path(directory).absolute()
    final = _step_dir(directory, step)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise CheckpointExistsError(f"checkpoint {final} already exists; refusing to "
                                        f"overwrite it (choose another step or directory)")
        _remove_stale_tmp(directory)
        tmp = directory / f".tmp-{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        # Convert once, so the manifest describes exactly what is stored (numpy
        # float64 becomes float32 unless jax_enable_x64 is on).
        leaves = [jnp.asarray(x) for x in jax.tree.leaves(state)]
        manifest = {
            "format": FORMAT,
            "step": step,
            "leaves": [{"path": p, "shape": list(x.shape), "dtype": str(x.dtype),
                        "sha256": array_digest(x)}
                       for p, x in zip(leaf_paths(state), leaves, strict=True)],
            "metadata": metadata or {},
        }
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp / "arrays", _flat(leaves))
        checkpointer.wait_until_finished()
        checkpointer.close()
        manifest["files"] = _file_digests(tmp)
        with open(tmp / _MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.rename(tmp, final)  # the commit point
        _fsync_dir(directory)
    except CheckpointError:
        raise
    except (OSError, TypeError) as e:
        raise CheckpointError(f"checkpoint_dir: could not write {final}: "
                              f"{type(e).__name__}: {e}") from e
    if keep is not None:
        for old in all_steps(directory)[:-keep]:
            doomed = _step_dir(directory, old)
            trash = directory / f".tmp-deleting-{doomed.name}-{os.getpid()}"
            os.rename(doomed, trash)  # never leaves a half-deleted "complete" checkpoint
            shutil.rmtree(trash)
    return final


def check_writable(directory, *, name: str = "checkpoint_dir") -> None:
    """Raise ``CheckpointError`` now if ``directory`` cannot hold checkpoints (before training)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".tmp-probe-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise CheckpointError(f"{name}: {directory} is not a writable folder "
                              f"({type(e).__name__}: {e.strerror or e})") from None


def check_new_run(directory, *, resume: bool, name: str = "checkpoint_dir",
                  resume_name: str = "resume=True") -> None:
    """Before training: ``directory`` is writable, and holds no other run unless resuming.

    Raises ``CheckpointError`` (not writable) or ``CheckpointExistsError``, so a
    run never fails after its first epoch, nor writes over another run.
    ``name``/``resume_name`` are how the caller spells the two arguments.
    """
    check_writable(directory, name=name)
    steps = all_steps(directory)
    if steps and not resume:
        raise CheckpointExistsError(
            f"{name}: {directory} already holds checkpoints (steps {steps}); pass "
            f"{resume_name} to continue that run, or use an empty folder")


def _flat(leaves: list) -> dict[str, Any]:
    return {f"{i:05d}": x for i, x in enumerate(leaves)}


def _resolve(directory, step: int | None) -> Path:
    directory = Path(directory)
    steps = all_steps(directory)
    if step is None:
        if not steps:
            raise CheckpointNotFoundError(f"no complete checkpoint in {directory}")
        step = steps[-1]
    step = non_negative_int("step", step)
    path = _step_dir(directory, step)
    if not (path / _MANIFEST).is_file():
        raise CheckpointNotFoundError(f"no checkpoint for step {step} in {directory}; "
                                      f"complete steps: {steps}")
    return path


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / _MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointCorruptError(f"checkpoint {path}: unreadable {_MANIFEST} "
                                     f"({type(e).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointCorruptError(f"checkpoint {path}: {_MANIFEST} is not a {FORMAT} manifest")
    return manifest


def _verify_files(path: Path, manifest: dict) -> None:
    want = manifest.get("files", {})
    have = _file_digests(path)
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            raise CheckpointCorruptError(f"checkpoint {path}: file {rel} is missing")
        if rel not in want:
            raise CheckpointCorruptError(f"checkpoint {path}: foreign file {rel} "
                                         f"(not written by jaxnet); refusing to load")
        if have[rel] != want[rel]:
            raise CheckpointCorruptError(f"checkpoint {path}: file {rel} is corrupt "
                                         f"(truncated or changed: its sha256 differs)")


def _check_like(path: Path, manifest: dict, like: Any) -> list:
    leaves = jax.tree.leaves(like)
    paths = leaf_paths(like)
    saved = manifest["leaves"]
    for i, (p, x) in enumerate(zip(paths, leaves, strict=False)):
        if i >= len(saved):
            raise CheckpointMismatchError(f"checkpoint {path}: has no {p} "
                                          f"(it holds {len(saved)} arrays, like has {len(paths)})")
        s = saved[i]
        shape, dtype = list(np.shape(x)), str(jnp.asarray(x).dtype)
        if s["path"] != p:
            raise CheckpointMismatchError(f"checkpoint {path}: structure differs at {p}: "
                                          f"the checkpoint has {s['path']} there")
        if s["shape"] != shape or s["dtype"] != dtype:
            raise CheckpointMismatchError(
                f"checkpoint {path}: {p} has shape {tuple(s['shape'])} {s['dtype']} in the "
                f"checkpoint but {tuple(shape)} {dtype} in like")
    if len(saved) > len(leaves):
        raise CheckpointMismatchError(f"checkpoint {path}: holds {saved[len(leaves)]['path']}, "
                                      f"which like does not have")
    return leaves


def _target(x) -> jax.ShapeDtypeStruct:
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype, sharding=sharding)


def restore(directory, like: Any, *, step: int | None = None) -> Any:
    """Load checkpoint ``step`` (default: the newest) shaped like ``like``.

    Args:
      directory: the folder given to ``save``.
      like: a pytree with the structure, shapes and dtypes to restore into
        (e.g. a freshly created ``TrainState``); its values are not used.
      step: which checkpoint; ``None`` for the newest complete one.

    Raises:
      CheckpointNotFoundError, CheckpointCorruptError, CheckpointMismatchError.
    """
    import orbax.checkpoint as ocp

    path = _resolve(directory, step)
    manifest = _read_manifest(path)
    _verify_files(path, manifest)
    leaves = _check_like(path, manifest, like)
    target = {k: _target(x) for k, x in _flat(leaves).items()}
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(path / "arrays", target)
    except Exception as e:  # orbax/tensorstore raise many types for damaged data
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointCorruptError(f"checkpoint {path}: could not read arrays: "
                                     f"{type(e).__name__}: {first[:200]}") from e
    values = [restored[k] for k in sorted(restored)]
    for entry, value in zip(manifest["leaves"], values, strict=True):
        if array_digest(value) != entry["sha256"]:
            raise CheckpointCorruptError(f"checkpoint {path}: array {entry['path']} does not "
                                         f"match its recorded sha256")
    return jax.tree.unflatten(jax.tree.structure(like), values)


def load_metadata(directory, step: int | None = None) -> dict:
    """The ``metadata`` dict saved with checkpoint ``step`` (default: newest)."""
    path = _resolve(directory, step)
    return _read_manifest(path)["metadata"]


def resume_state(directory, like: Any, *, log=print) -> tuple[Any, int, list, dict | None]:
    """Restore the newest intact checkpoint written by ``train.fit``.

    Returns ``(state, epoch, history, config)`` (``config``: the run
    configuration saved with it). With no checkpoint at all it returns
    ``(like, 0, [], None)`` and says so; a damaged newest checkpoint is moved aside
    (renamed ``corrupt-step_...``, never deleted) with a warning in favour of
    an older intact one; if checkpoints exist but none is intact it raises
    ``CheckpointCorruptError`` and changes nothing, rather than start over.
    """
    steps = all_steps(directory)
    if not steps:
        log(f"resume: no complete checkpoint in {directory}; starting from scratch")
        return like, 0, [], None
    damaged: list[tuple[int, CheckpointCorruptError]] = []
    for step in reversed(steps):
        try:
            state = restore(directory, like, step=step)
            meta = load_metadata(directory, step)
        except CheckpointCorruptError as e:
            damaged.append((step, e))
            continue
        for bad_step, error in damaged:
            # Moved, never deleted: the user can still inspect it, and the resumed
            # run can write this step again.
            bad = _step_dir(Path(directory), bad_step)
            aside = bad.with_name(f"corrupt-{bad.name}-{time.time_ns()}")
            os.rename(bad, aside)
            log(f"warning: {error}; moved it to {aside.name}")
        log(f"resume: continuing from {_step_dir(Path(directory), step)} "
            f"(epoch {meta.get('epoch', step)})")
        return (state, int(meta.get("epoch", step)), list(meta.get("history", [])),
                meta.get("config"))
    raise CheckpointCorruptError(f"no intact checkpoint in {directory} ({len(damaged)} "
                                 f"damaged, none changed); newest: {damaged[0][1]}")
