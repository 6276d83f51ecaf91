"""save, prune, restore: checkpoints as verified folders. Knows nothing of ``fit``."""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from .. import _fs, _proc
from .._checks import _is_int
from .._tree import array_digest, leaf_paths
from ..nn._functional import check_live
from ._errors import (
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointNotFoundError,
    why,
)
from ._layout import (
    MANIFEST,
    check_step,
    clean_work_dirs,
    new_work_dir,
    paths,
    remove_work_dir,
    resolve,
    scan_steps,
    step_name,
)
from ._lock import lock
from ._manifest import FORMAT, check_like, check_metadata, file_records, read_manifest, verify_files
from ._orbax import (
    checkpointer,
    empty_like,
    flat,
    host_local,
    orbax_why,
    quiet_orbax,
    restore_target,
    stored_leaves,
)

logger = logging.getLogger(__name__)


def save(directory, state: Any, *, step: int, metadata: dict | None = None,
         keep: int | None = None) -> Path:
    """Write ``state`` (any pytree of arrays) as checkpoint ``step`` in ``directory``.

    Takes ``lock(directory)`` unless this process already holds it.

    Args:
      directory: folder holding the checkpoints (created if missing); any path.
      state: a pytree of arrays, e.g. a ``TrainState`` or a params dict.
      step: non-negative int identifying the checkpoint; never overwritten.
      metadata: JSON-serialisable dict stored alongside (epoch, config...).
      keep: if given, delete all but the newest ``keep`` checkpoints afterwards
        (after the new one is committed: a kill in between leaves ``keep + 1``,
        which the next save prunes, rather than ever fewer than ``keep``).

    Returns:
      The checkpoint's folder (absolute).

    Raises:
      CheckpointExistsError (the step exists), CheckpointLockedError (another
      process writes there), CheckpointError (the disk is full, permission
      denied, a name too long...: earlier checkpoints are intact and no
      partial checkpoint is left or listed).

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for step in (1, 2, 3):
    ...     folder = save(d, {"w": jnp.ones((2, 3))}, step=step, metadata={"epoch": step}, keep=2)
    >>> from jaxnet.checkpoint import all_steps
    >>> os.path.basename(folder), all_steps(d)
    ('step_00000003', [2, 3])
    """
    import orbax.checkpoint as ocp

    step = check_step(step)
    if keep is not None and (not _is_int(keep) or keep < 1):
        raise ValueError(f"keep: expected a positive int or None, got {keep!r}")
    check_metadata(metadata)
    path, shown = paths(directory)
    name = step_name(step)
    final, shown_final = path / name, os.path.join(shown, name)
    # a state a train step consumed: jaxnet's one line, not "Array has been deleted"
    check_live(state, "state", "save the state the step or fit returned")
    _refuse_typed_keys(state)
    try:  # convert once, so the manifest describes exactly what is stored
        leaves = [jnp.asarray(x) for x in jax.tree.leaves(state)]
    except TypeError as e:
        raise TypeError(f"state: expected a pytree of arrays ({e})") from None
    entries = [{"path": p, "shape": list(x.shape), "dtype": str(x.dtype),
                "sha256": array_digest(x)}
               for p, x in zip(leaf_paths(state), leaves, strict=True)]
    with _proc.signals_deferred(), lock(directory):
        if os.path.lexists(final):
            raise CheckpointExistsError(f"checkpoint {shown_final} already exists; refusing "
                                        f"to overwrite it (choose another step or directory)")
        clean_work_dirs(path)
        work = None
        try:
            work = new_work_dir(path, "save")
            build = work / name
            build.mkdir()
            stored = stored_leaves([host_local(x) for x in leaves])
            if stored:  # orbax refuses empty arrays and empty trees: the manifest holds them
                with quiet_orbax():
                    checkpointer(ocp).save(build / "arrays",
                                           args=ocp.args.StandardSave(stored))
            manifest = {"format": FORMAT, "step": step, "leaves": entries,
                        "files": file_records(build), "metadata": metadata or {}}
            _fs.write_new(build / MANIFEST, json.dumps(manifest, indent=1).encode())
            _fs.fsync_dir(build)
            os.rename(build, final)  # the commit point
            _fs.fsync_dir(path)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and os.path.lexists(final):
                raise CheckpointExistsError(f"checkpoint {shown_final} appeared while saving; "
                                            f"refusing to overwrite it") from e
            raise CheckpointError(f"checkpoint_dir: could not write {shown_final}: {why(e)}; "
                                  f"earlier checkpoints are intact") from e
        except Exception as e:  # orbax/tensorstore raise many types (e.g. disk full)
            raise CheckpointError(f"checkpoint_dir: could not write {shown_final}: "
                                  f"{orbax_why(e)}; earlier checkpoints are intact") from e
        finally:
            if work is not None:
                remove_work_dir(work)
        if keep is not None:
            _prune(path, keep)
    return final


def _refuse_typed_keys(state: Any) -> None:
    """A typed ``jax.random.key`` leaf has no bytes of its own to store (numpy cannot hold
    it): refused naming its path and the raw key data that can be saved instead."""
    for where, leaf in zip(leaf_paths(state), jax.tree.leaves(state), strict=True):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            raise TypeError(
                f"state: the leaf {where} is a typed jax.random key ({dtype}), which a "
                f"checkpoint cannot hold; save jax.random.key_data(key) (a uint32 array) "
                f"instead and rebuild it after restore with jax.random.wrap_key_data(data)")


def _prune(path: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoints, each by one atomic rename into a
    marked work folder (never a half-deleted checkpoint that is still listed)."""
    doomed = scan_steps(path, str(path))[:-keep]
    if not doomed:
        return
    try:
        work = new_work_dir(path, "prune")
    except OSError as e:
        logger.warning("checkpoint: could not prune %s: %s", path, why(e))
        return
    try:
        for step in doomed:
            try:
                os.rename(path / step_name(step), work / step_name(step))
            except FileNotFoundError:
                continue  # already gone
            except OSError as e:
                logger.warning("checkpoint: could not prune %s: %s", step_name(step), why(e))
    finally:
        remove_work_dir(work)


def check_writable(directory, *, name: str = "checkpoint_dir") -> None:
    """Raise ``CheckpointError`` now if ``directory`` cannot hold checkpoints (before training).

    Creates nothing: a missing folder passes if its nearest existing parent is
    a writable folder and the names fit the file system.

    Args:
      directory: the checkpoint folder to check (any path; may not exist yet).
      name: how the caller's argument is spelled in the message.

    Raises:
      CheckpointError: the folder cannot be created or written.

    >>> import os, tempfile
    >>> d = os.path.join(tempfile.mkdtemp(), "new", "run")
    >>> check_writable(d)  # passes, creates nothing
    >>> os.path.exists(d)
    False
    """
    path, shown = paths(directory, name)
    try:
        existing, missing = path, []
        while not existing.exists():
            missing.append(existing.name)
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is not a folder")
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        if any(len(os.fsencode(part)) > name_max for part in missing):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        # room for what jaxnet writes inside (work folder, step, orbax's files)
        if len(os.fsencode(str(path))) + 200 > os.pathconf(existing, "PC_PATH_MAX"):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        os.rmdir(tempfile.mkdtemp(prefix=".jaxnet-probe-", dir=existing))
    except OSError as e:
        raise CheckpointError(f"{name}: {shown} is not a writable folder ({why(e)})") from None


def restore_step(path: Path, shown: str, like: Any, step: int,
                 manifest: dict | None = None) -> tuple[Any, dict]:
    """Restore one verified checkpoint: ``(state, manifest)``.

    ``manifest``: the step's, if the caller has read it already (read once).
    """
    import orbax.checkpoint as ocp

    step_path, shown_step = path / step_name(step), os.path.join(shown, step_name(step))
    try:
        if manifest is None:
            manifest = read_manifest(path, shown, step)
        verify_files(step_path, shown_step, manifest)
        leaves = check_like(shown_step, manifest, like)
        target = {k: restore_target(x) for k, x in stored_leaves(leaves).items()}
        restored = {}
        try:
            if target:
                with quiet_orbax():
                    restored = checkpointer(ocp).restore(
                        step_path / "arrays", args=ocp.args.StandardRestore(target))
        except Exception as e:  # orbax/tensorstore raise many types for damaged data
            raise CheckpointCorruptError(f"checkpoint {shown_step}: could not read arrays: "
                                         f"{orbax_why(e)}") from e
        if sorted(restored) != sorted(target):
            raise CheckpointCorruptError(f"checkpoint {shown_step}: its arrays are not the "
                                         f"ones its {MANIFEST} lists")
        values = [restored[k] if k in restored else empty_like(x)
                  for k, x in flat(leaves).items()]
        for entry, value in zip(manifest["leaves"], values, strict=True):
            if array_digest(value) != entry["sha256"]:
                raise CheckpointCorruptError(f"checkpoint {shown_step}: array {entry['path']} "
                                             f"does not match its recorded sha256")
    except CheckpointCorruptError as e:
        if not os.path.lexists(step_path):  # pruned under us: gone, not damaged
            raise CheckpointNotFoundError(f"checkpoint {shown_step} was removed while being "
                                          f"read (pruned by another run?)") from e
        raise
    return jax.tree.unflatten(jax.tree.structure(like), values), manifest


def restore(directory, like: Any = None, *, step: int | None = None) -> Any:
    """Load checkpoint ``step`` (default: the newest) shaped like ``like``.

    Args:
      directory: the folder given to ``save`` (any path: relative, ``~``...).
      like: a pytree with the structure, shapes and dtypes to restore into
        (e.g. a freshly created ``TrainState``); its values are not used.
        Required (``None`` raises a ``TypeError`` naming ``jaxnet.load``).
      step: which checkpoint; ``None`` for the newest complete one.

    Returns:
      A pytree like ``like`` holding the saved arrays (same shapes and dtypes).

    Raises:
      CheckpointNotFoundError, CheckpointCorruptError, CheckpointMismatchError.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = save(d, {"w": jnp.arange(3.0)}, step=1)
    >>> _ = save(d, {"w": jnp.zeros(3)}, step=2)
    >>> restore(d, like={"w": jnp.zeros(3)}, step=1)["w"].tolist()
    [0.0, 1.0, 2.0]
    """
    if like is None:  # torch.load(path) needs no template; a checkpoint of arrays does
        raise TypeError("like: required: the structure to restore into, e.g. "
                        "like=nn.state_dict(model) or a fresh TrainState; to load a model's "
                        "weights for prediction, jaxnet.load(path, into=model)")
    path, shown = paths(directory)
    with _proc.signals_deferred():
        return restore_step(path, shown, like, resolve(path, shown, step))[0]


def load_metadata(directory, step: int | None = None) -> dict:
    """The ``metadata`` dict saved with checkpoint ``step`` (default: newest).

    Args:
      directory: the checkpoint folder (any path).
      step: which checkpoint; ``None`` for the newest complete one.

    Returns:
      The JSON dict given to ``save(..., metadata=)`` (``{}`` if none).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = save(d, {"w": jnp.zeros(2)}, step=1, metadata={"epoch": 1, "lr": 0.01})
    >>> load_metadata(d)
    {'epoch': 1, 'lr': 0.01}
    """
    path, shown = paths(directory)
    return read_manifest(path, shown, resolve(path, shown, step))["metadata"]
