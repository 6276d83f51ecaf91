"""Save and restore training state: ``torch.save(state_dict)`` without pickle.

Layout of a checkpoint directory::

    DIR/step_00000003/arrays/...        arrays, written by orbax-checkpoint
    DIR/step_00000003/manifest.json     format, step, your metadata, and the size
                                        and sha256 of every array and every file
    DIR/.jaxnet-lock                    while a process writes: its host and pid
    DIR/.jaxnet-tmp-<32 hex>/           jaxnet's own work folders, each marked by a
                                        jaxnet-owner.json inside that names it

Guarantees:

* Any path: relative paths, ``~``, spaces and non-ASCII names work; messages
  show the path as you gave it.
* Atomic: a checkpoint is built in a work folder and renamed into place only
  when complete, so a kill at any moment leaves the previous checkpoints
  intact and a half-written one is never listed by ``all_steps``. A failed
  save (disk full, permission denied, name too long) raises one
  ``CheckpointError`` line and removes its own work folder.
* One writer: ``save`` and ``resume_state`` hold ``lock(directory)``, a lock
  file taken atomically that records the host and process; a second writer
  fails at once with ``CheckpointLockedError`` naming the holder. A lock left
  by a dead process on this host is recovered (and said so); a lock from
  another host is never taken over silently.
* Verified: ``restore`` validates the manifest against its schema (size- and
  depth-capped), checks that every file is a regular file of the recorded
  size before opening anything, checks every file's digest, and rejects
  missing, changed or foreign files; then checks every restored array's
  digest. Any problem is a ``CheckpointCorruptError``. Only arrays and JSON
  are read; nothing from the file is executed (no pickle).
* Checked against ``like``: structure, shapes and dtypes must match; the
  error names the first differing path with both values.
* Never overwritten, never deleted unless jaxnet made it: saving a step that
  exists raises ``CheckpointExistsError``; only jaxnet's marked work folders
  and the checkpoints that ``keep=`` prunes are ever removed.
* Signals: SIGINT/SIGTERM arriving during a save or restore take effect when
  it is finished, so an interrupted run always resumes from a whole checkpoint.

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

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _fs, _proc
from ._checks import non_negative_int
from ._tree import array_digest, leaf_paths

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointLockedError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "all_steps",
    "check_new_run",
    "check_writable",
    "latest_step",
    "load_metadata",
    "lock",
    "restore",
    "resume_state",
    "save",
]

logger = logging.getLogger(__name__)

FORMAT = "jaxnet.checkpoint/2"  # files carry their size; /1 (digests only) is still read
_FORMATS = ("jaxnet.checkpoint/1", FORMAT)
_MANIFEST = "manifest.json"
_PREFIX = "step_"
_STEP_NAME = re.compile(r"step_([0-9]{1,18})", re.ASCII)
_LOCK = ".jaxnet-lock"
_TMP = ".jaxnet-tmp-"
_TMP_NAME = re.compile(r"\.jaxnet-tmp-([0-9a-f]{32})", re.ASCII)
_OWNER = "jaxnet-owner.json"
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_DTYPE = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
MAX_MANIFEST_BYTES = 64 << 20  # a manifest is read whole only below this size
MAX_JSON_DEPTH = 64  # nesting of a manifest (metadata included)
_MAX_FILES = 100_000  # entries walked in one checkpoint
MAX_STEP = 10**18
_HOST = socket.gethostname()


class CheckpointError(Exception):
    """Base class of checkpoint errors."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No (such) checkpoint in the directory."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's files are truncated, changed, missing, foreign or malformed."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint does not fit the ``like`` template (structure, shape or dtype)."""


class CheckpointExistsError(CheckpointError, FileExistsError):
    """Refusing to overwrite an existing checkpoint."""


class CheckpointLockedError(CheckpointError):
    """Another process holds the checkpoint folder's lock (the message names it)."""


# --------------------------------------------------------------------------- paths


def _paths(directory) -> tuple[Path, str]:
    """``(absolute path, the path as given)``: orbax needs absolute paths."""
    return _fs.user_path(directory, name="directory", what="folder path")


def _step_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def _check_step(step: Any) -> int:
    step = non_negative_int("step", step)
    if step >= MAX_STEP:
        raise ValueError(f"step: expected an int below 10**18, got {step}")
    return step


def _why(e: BaseException) -> str:
    """``No space left on device (ENOSPC)`` for an OSError; the first line otherwise."""
    if isinstance(e, OSError) and e.errno:
        return f"{e.strerror or os.strerror(e.errno)} ({errno.errorcode.get(e.errno, e.errno)})"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _orbax_why(e: BaseException) -> str:
    """One line for an orbax/tensorstore failure, naming the OS error when it has one."""
    if isinstance(e, OSError):
        return _why(e)
    match = re.search(r"os_error_code='?(\d+)", str(e))
    if match:
        code = int(match[1])
        return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
    return _why(e)


def _scan_steps(path: Path, shown: str) -> list[int]:
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise CheckpointError(f"checkpoint_dir: cannot list {shown}: {_why(e)}") from None
    steps = []
    for entry in entries:
        match = _STEP_NAME.fullmatch(entry.name)
        if not match or entry.name != _step_name(int(match[1])) \
                or not entry.is_dir(follow_symlinks=False):
            continue  # only jaxnet's own spelling, e.g. step_00000003
        try:
            if stat.S_ISREG(os.lstat(os.path.join(entry.path, _MANIFEST)).st_mode):
                steps.append(int(match[1]))
        except OSError:
            continue  # no manifest (yet): an incomplete checkpoint is never listed
    return sorted(steps)


def all_steps(directory) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending ([] if none).

    Args:
      directory: the checkpoint folder (any path; a missing folder has none).

    Returns:
      A sorted list of ints; half-written checkpoints are never listed.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> for step in (2, 1):
    ...     _ = save(d, {"w": jnp.zeros(2)}, step=step)
    >>> all_steps(d)
    [1, 2]
    """
    return _scan_steps(*_paths(directory))


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step, or ``None``.

    Args:
      directory: the checkpoint folder (any path).

    Returns:
      int, the largest of ``all_steps(directory)``, or ``None`` if there is none.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> print(latest_step(d))
    None
    >>> _ = save(d, {"w": jnp.zeros(2)}, step=5)
    >>> latest_step(d)
    5
    """
    steps = all_steps(directory)
    return steps[-1] if steps else None


# --------------------------------------------------------------------------- small file helpers


def _json_depth(obj: Any) -> int:
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Keep orbax's worker-thread tracebacks off stderr: jaxnet reports one line instead.

    Orbax logs each failure of its writer threads through absl (hundreds of
    lines for a full disk) and can leave coroutines that complain when
    collected; both are kept at debug level here.
    """
    records: list[logging.LogRecord] = []

    class _Capture(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            records.append(record)
            return False

    capture = _Capture()
    absl = logging.getLogger("absl")
    absl.addFilter(capture)
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    except BaseException:
        gc.collect()  # collect orbax's abandoned coroutines now, while they are silenced
        raise
    finally:
        absl.removeFilter(capture)
        sys.unraisablehook = old_hook
        for record in records:
            logger.debug("orbax: %s", record.getMessage().splitlines()[0][:500])


# --------------------------------------------------------------------------- the lock

_held: dict[str, list] = {}  # lock file -> [pid, depth, token] of this process
_held_guard = threading.RLock()


def _read_json_record(path: Path, cap: int = 4096) -> tuple[bytes | None, dict | None]:
    """``(raw bytes, the JSON object if it is a dict)``; raw is None if the file is gone."""
    try:
        raw = _fs.read_bounded(path, cap)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError):
        return b"", None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return raw, None
    return raw, record if isinstance(record, dict) else None


def _holder(record: dict | None, lockfile: Path) -> str:
    """``live`` | ``stale`` | ``foreign`` | ``starting`` | ``unreadable``."""
    if record is None:
        try:
            age = time.time() - os.lstat(lockfile).st_mtime
        except OSError:
            return "starting"
        return "starting" if age < 30 else "unreadable"
    if record.get("host") != _HOST:
        return "foreign" if isinstance(record.get("host"), str) else "unreadable"
    alive = _proc.process_alive(record.get("pid"), record.get("start"))
    if alive is None:
        return "unreadable"
    if not alive or record.get("pid") == os.getpid():
        return "stale"  # our own pid, yet we do not hold it: left by an earlier process
    return "live"


def _locked_message(name: str, shown: str, record: dict | None, state: str) -> str:
    lockfile = os.path.join(shown, _LOCK)
    if state == "starting":
        return (f"{name}: {shown} is being locked by another process right now; wait for "
                f"it or use another folder")
    if state == "unreadable":
        return (f"{name}: {shown} has an unreadable lock file {lockfile}; if no jaxnet run "
                f"uses this folder, delete that file")
    assert record is not None
    who = f"process {record.get('pid')}"
    since = f", since {record['since']}" if isinstance(record.get("since"), str) else ""
    if state == "foreign":
        return (f"{name}: {shown} is locked by {who} on host {record['host']}{since}; jaxnet "
                f"cannot tell from here whether it still runs: if it has ended, delete "
                f"{lockfile}")
    return (f"{name}: {shown} is in use by another jaxnet run ({who} on this host{since}); "
            f"wait for it to end or use another folder")


@contextlib.contextmanager
def _dir_guard(path: Path) -> Iterator[None]:
    """Serialise stale-lock recovery between processes of this host (flock on the folder)."""
    try:
        import fcntl

        fd = os.open(path, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _recover_or_raise(path: Path, shown: str, name: str, log: Callable[[str], Any]) -> None:
    """Remove the lock file if a dead process of this host left it; else raise who holds it."""
    lockfile = path / _LOCK
    with _dir_guard(path):
        raw, record = _read_json_record(lockfile)
        if raw is None:
            return  # released meanwhile: try again
        state = _holder(record, lockfile)
        if state != "stale":
            raise CheckpointLockedError(_locked_message(name, shown, record, state))
        os.unlink(lockfile)
    log(f"checkpoint: removed a stale lock in {shown}: process {record['pid']} on this host "
        f"({_HOST}) no longer runs")


def _acquire(path: Path, shown: str, name: str, log: Callable[[str], Any]) -> str:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"{name}: could not write {shown}: {_why(e)}") from None
    token = uuid.uuid4().hex
    record = {"jaxnet": "checkpoint folder lock", "host": _HOST, "pid": os.getpid(),
              "start": _proc.start_ticks(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "token": token, "command": " ".join(sys.argv)[:300]}
    lockfile = path / _LOCK
    data = json.dumps(record).encode()
    for _ in range(5):
        try:
            _fs.write_new(lockfile, data)
        except FileExistsError:
            _recover_or_raise(path, shown, name, log)
            continue
        except OSError as e:
            raise CheckpointError(f"{name}: could not write the lock file "
                                  f"{os.path.join(shown, _LOCK)}: {_why(e)}") from None
        return token
    raise CheckpointLockedError(f"{name}: {shown}: another process keeps taking the lock; "
                                f"wait for it or use another folder")


def _release(path: Path, token: str) -> None:
    lockfile = path / _LOCK
    _, record = _read_json_record(lockfile)
    if record is not None and record.get("token") == token:
        with contextlib.suppress(OSError):
            os.unlink(lockfile)
    else:
        logger.warning("checkpoint: the lock in %s was replaced by another process; left it",
                       path)


def _holds(key: str) -> bool:
    entry = _held.get(key)
    return entry is not None and entry[0] == os.getpid()  # a forked child holds nothing


@contextlib.contextmanager
def lock(directory, *, log: Callable[[str], Any] | None = None,
         name: str = "checkpoint_dir") -> Iterator[Path]:
    """Hold ``directory``'s writer lock for a ``with`` block (re-entrant within a process).

    The lock is a file ``DIR/.jaxnet-lock`` created atomically (``O_CREAT |
    O_EXCL``) that records this host, process id and start time. While one
    process holds it, ``lock``/``save``/``resume_state`` in another fail at
    once with ``CheckpointLockedError`` naming the holder. A lock left by a
    process of this host that no longer runs is removed (``log`` says so); a
    lock from another host is never taken over: the error says how to remove
    it. ``directory`` is created if missing.

    Args:
      directory: the checkpoint folder (relative, ``~``: any path).
      log: where the stale-lock message goes (default: a ``logging`` warning).
      name: how the caller's argument is spelled in messages.

    Yields:
      The folder's absolute path.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with lock(d):
    ...     with lock(d):  # re-entrant
    ...         _ = save(d, {"w": jnp.zeros(2)}, step=1)
    """
    path, shown = _paths(directory)
    key = str(path / _LOCK)
    log = log or logger.warning
    with _held_guard:
        if _holds(key):
            _held[key][1] += 1
            token = None
        else:
            with _proc.signals_deferred():
                token = _acquire(path, shown, name, log)
            _held[key] = [os.getpid(), 1, token]
    try:
        yield path
    finally:
        with _held_guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                with _proc.signals_deferred():
                    _release(path, entry[2])


def _check_unlocked(path: Path, shown: str, name: str) -> None:
    """Raise ``CheckpointLockedError`` if a live process (or another host) holds the lock."""
    if _holds(str(path / _LOCK)):
        return
    raw, record = _read_json_record(path / _LOCK)
    if raw is None:
        return
    state = _holder(record, path / _LOCK)
    if state != "stale":  # a stale lock is recovered, and reported, when taken
        raise CheckpointLockedError(_locked_message(name, shown, record, state))


# --------------------------------------------------------------------------- work folders

_active_work: set[str] = set()  # tokens of this process's work folders in use


def _new_work_dir(path: Path, purpose: str) -> Path:
    """A marked work folder: ``.jaxnet-tmp-<token>`` holding a ``jaxnet-owner.json`` that
    names the same token. Only such folders are ever cleaned up, so no user file can match."""
    token = uuid.uuid4().hex
    work = path / f"{_TMP}{token}"
    work.mkdir()
    _active_work.add(token)
    owner = {"jaxnet": f"temporary folder ({purpose}); jaxnet removes it", "token": token,
             "host": _HOST, "pid": os.getpid(), "start": _proc.start_ticks(os.getpid())}
    try:
        _fs.write_new(work / _OWNER, json.dumps(owner).encode())
    except BaseException:
        _active_work.discard(token)
        with contextlib.suppress(OSError):
            work.rmdir()
        raise
    return work


def _remove_work_dir(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)  # what is left stays marked: removed next time
    _active_work.discard(work.name[len(_TMP):])


def _clean_work_dirs(path: Path) -> None:
    """Remove jaxnet's own abandoned work folders (the caller holds the lock).

    Only a folder named ``.jaxnet-tmp-<32 hex>`` whose marker file carries that
    same token qualifies; a user's ``.tmp-foo`` (or anything else) never does.
    Since every writer holds the lock, a marked folder is abandoned unless its
    process, on this host, still runs.
    """
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        match = _TMP_NAME.fullmatch(entry.name)
        if not match or match[1] in _active_work or not entry.is_dir(follow_symlinks=False):
            continue
        _, owner = _read_json_record(Path(entry.path) / _OWNER)
        if owner is None or owner.get("token") != match[1]:
            continue
        if owner.get("host") == _HOST and owner.get("pid") != os.getpid() \
                and _proc.process_alive(owner.get("pid"), owner.get("start")):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)


# --------------------------------------------------------------------------- save


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
                elif rel != _MANIFEST:
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


def _file_records(root: Path) -> dict[str, dict]:
    records = {}
    for rel, st in sorted(_walk(root).items()):
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{rel} is not a regular file")
        records[rel] = {"size": st.st_size, "sha256": _sha256_file(root / rel, st.st_size)}
    return records


def _check_metadata(metadata: Any) -> None:
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict of JSON values or None, got "
                        f"{type(metadata).__name__}")
    try:
        json.dumps(metadata or {})
    except (TypeError, ValueError) as e:
        raise TypeError(f"metadata: expected a dict of JSON values, got one that JSON "
                        f"cannot hold ({e})") from None
    if _json_depth(metadata or {}) > MAX_JSON_DEPTH - 2:
        raise ValueError(f"metadata: expected at most {MAX_JSON_DEPTH - 2} levels of nesting, "
                         f"got more")


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
    >>> os.path.basename(folder), all_steps(d)
    ('step_00000003', [2, 3])
    """
    import orbax.checkpoint as ocp

    step = _check_step(step)
    if keep is not None and (not _is_int(keep) or keep < 1):
        raise ValueError(f"keep: expected a positive int or None, got {keep!r}")
    _check_metadata(metadata)
    path, shown = _paths(directory)
    name = _step_name(step)
    final, shown_final = path / name, os.path.join(shown, name)
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
        _clean_work_dirs(path)
        work = None
        try:
            work = _new_work_dir(path, "save")
            build = work / name
            build.mkdir()
            with _quiet_orbax():
                _checkpointer(ocp).save(
                    build / "arrays",
                    args=ocp.args.StandardSave(_flat([_host_local(x) for x in leaves])))
            manifest = {"format": FORMAT, "step": step, "leaves": entries,
                        "files": _file_records(build), "metadata": metadata or {}}
            _fs.write_new(build / _MANIFEST, json.dumps(manifest, indent=1).encode())
            _fs.fsync_dir(build)
            os.rename(build, final)  # the commit point
            _fs.fsync_dir(path)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and os.path.lexists(final):
                raise CheckpointExistsError(f"checkpoint {shown_final} appeared while saving; "
                                            f"refusing to overwrite it") from e
            raise CheckpointError(f"checkpoint_dir: could not write {shown_final}: {_why(e)}; "
                                  f"earlier checkpoints are intact") from e
        except Exception as e:  # orbax/tensorstore raise many types (e.g. disk full)
            raise CheckpointError(f"checkpoint_dir: could not write {shown_final}: "
                                  f"{_orbax_why(e)}; earlier checkpoints are intact") from e
        finally:
            if work is not None:
                _remove_work_dir(work)
        if keep is not None:
            _prune(path, keep)
    return final


def _prune(path: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoints, each by one atomic rename into a
    marked work folder (never a half-deleted checkpoint that is still listed)."""
    doomed = _scan_steps(path, str(path))[:-keep]
    if not doomed:
        return
    try:
        work = _new_work_dir(path, "prune")
    except OSError as e:
        logger.warning("checkpoint: could not prune %s: %s", path, _why(e))
        return
    try:
        for step in doomed:
            try:
                os.rename(path / _step_name(step), work / _step_name(step))
            except FileNotFoundError:
                continue  # already gone
            except OSError as e:
                logger.warning("checkpoint: could not prune %s: %s", _step_name(step), _why(e))
    finally:
        _remove_work_dir(work)


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
    path, shown = _paths(directory)
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
        raise CheckpointError(f"{name}: {shown} is not a writable folder ({_why(e)})") from None


def check_new_run(directory, *, resume: bool, name: str = "checkpoint_dir",
                  resume_name: str = "resume=True") -> None:
    """Before training: ``directory`` is writable, not locked by another run, and holds no
    other run unless resuming.

    Raises ``CheckpointError`` (not writable), ``CheckpointLockedError`` or
    ``CheckpointExistsError``, so a run never fails after its first epoch, nor
    writes over another run. ``name``/``resume_name`` are how the caller
    spells the two arguments. Creates nothing.

    Args:
      directory: the checkpoint folder of the run about to start (any path).
      resume: bool, whether the run continues the checkpoints already there.
      name: how ``directory`` is spelled in messages.
      resume_name: how ``resume`` is spelled in messages.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> check_new_run(d, resume=False)  # an empty folder: fine
    >>> _ = save(d, {"w": jnp.zeros(2)}, step=1)
    >>> check_new_run(d, resume=True)  # continuing it: fine
    >>> check_new_run(d, resume=False)
    Traceback (most recent call last):
    ...
    jaxnet.checkpoint.CheckpointExistsError: checkpoint_dir: ... already holds checkpoints ...
    """
    check_writable(directory, name=name)
    path, shown = _paths(directory)
    _check_unlocked(path, shown, name)
    steps = _scan_steps(path, shown)
    if steps and not resume:
        raise CheckpointExistsError(
            f"{name}: {shown} already holds checkpoints (steps {steps}); pass "
            f"{resume_name} to continue that run, or use an empty folder")


# --------------------------------------------------------------------------- restore


def _checkpointer(ocp):
    """Orbax's checkpointer for this process alone.

    In a multi-process run one process (process 0, see ``jaxnet.parallel``)
    saves and restores; by default orbax would wait at barriers for all the
    others, which never come (a hang).
    """
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.Checkpointer(ocp.StandardCheckpointHandler(multiprocessing_options=options),
                            multiprocessing_options=options)


def _host_local(x):
    """What orbax is given to write: in a multi-process run a numpy copy (orbax refuses
    arrays that are not global, and a global one would need every process)."""
    if jax.process_count() > 1 and isinstance(x, jax.Array):
        return np.asarray(x)  # a replicated global array: this process's full copy
    return x


def _flat(leaves: list) -> dict[str, Any]:
    return {f"{i:05d}": x for i, x in enumerate(leaves)}


def _resolve(path: Path, shown: str, step: int | None) -> int:
    steps = _scan_steps(path, shown)
    if step is None:
        if not steps:
            raise CheckpointNotFoundError(f"no complete checkpoint in {shown}")
        return steps[-1]
    step = _check_step(step)
    if step not in steps:
        raise CheckpointNotFoundError(f"no checkpoint for step {step} in {shown}; "
                                      f"complete steps: {steps}")
    return step


def _schema_error(shown_step: str, what: str) -> CheckpointCorruptError:
    return CheckpointCorruptError(f"checkpoint {shown_step}: {_MANIFEST} is malformed: {what}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expect(shown_step: str, where: str, value: Any, kind: type | tuple) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _schema_error(shown_step, f"{where} must be {want}, got {_type_name(value)}")
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
        raise CheckpointCorruptError(f"checkpoint {shown_step}: {_MANIFEST} is not a {FORMAT} "
                                     f"manifest (format {fmt!r})")
    required = {"format", "step", "leaves", "files", "metadata"}
    missing, extra = required - set(obj), set(obj) - required
    if missing or extra:
        raise _schema_error(shown_step, f"missing keys {sorted(missing)}" if missing
                            else f"unexpected keys {sorted(extra)}")
    if _expect(shown_step, "'step'", obj["step"], int) != step:
        raise _schema_error(shown_step, f"'step' is {obj['step']}, but the folder is step {step}")
    for i, leaf in enumerate(_expect(shown_step, "'leaves'", obj["leaves"], list)):
        where = f"leaves[{i}]"
        _expect(shown_step, where, leaf, dict)
        if set(leaf) != {"path", "shape", "dtype", "sha256"}:
            raise _schema_error(shown_step, f"{where} must have the keys path, shape, dtype and "
                                            f"sha256, got {sorted(leaf)}")
        _expect(shown_step, f"{where}.path", leaf["path"], str)
        shape = _expect(shown_step, f"{where}.shape", leaf["shape"], list)
        if len(shape) > 32 or not all(_is_int(d) and 0 <= d < 2**62 for d in shape):
            raise _schema_error(shown_step, f"{where}.shape must be a list of sizes, got "
                                            f"{str(shape)[:80]}")
        if not _DTYPE.fullmatch(_expect(shown_step, f"{where}.dtype", leaf["dtype"], str)):
            raise _schema_error(shown_step, f"{where}.dtype is not a dtype: {leaf['dtype'][:40]!r}")
        if not _HEX64.fullmatch(_expect(shown_step, f"{where}.sha256", leaf["sha256"], str)):
            raise _schema_error(shown_step, f"{where}.sha256 is not a sha256 digest")
    files = {}
    for rel, record in _expect(shown_step, "'files'", obj["files"], dict).items():
        if not _valid_rel(rel):
            raise _schema_error(shown_step, f"'files' names an invalid path {rel[:80]!r}")
        if fmt == "jaxnet.checkpoint/1":
            size, digest = None, _expect(shown_step, f"files[{rel!r}]", record, str)
        else:
            _expect(shown_step, f"files[{rel!r}]", record, dict)
            if set(record) != {"size", "sha256"}:
                raise _schema_error(shown_step, f"files[{rel!r}] must have the keys size and "
                                                f"sha256, got {sorted(record)}")
            size = _expect(shown_step, f"files[{rel!r}].size", record["size"], int)
            digest = _expect(shown_step, f"files[{rel!r}].sha256", record["sha256"], str)
            if size < 0:
                raise _schema_error(shown_step, f"files[{rel!r}].size is negative")
        if not _HEX64.fullmatch(digest):
            raise _schema_error(shown_step, f"files[{rel!r}] has no sha256 digest")
        files[rel] = (size, digest)
    _expect(shown_step, "'metadata'", obj["metadata"], dict)
    return {**obj, "files": files}


def _read_manifest(path: Path, shown: str, step: int) -> dict:
    step_path, shown_step = path / _step_name(step), os.path.join(shown, _step_name(step))
    try:
        raw = _fs.read_bounded(step_path / _MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"checkpoint {shown_step} was removed while being read "
                                      f"(pruned by another run?)") from None
    except (OSError, ValueError) as e:
        why = _why(e) if isinstance(e, OSError) else str(e)
        raise CheckpointCorruptError(f"checkpoint {shown_step}: unreadable {_MANIFEST} "
                                     f"({why})") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointCorruptError(f"checkpoint {shown_step}: unreadable {_MANIFEST} "
                                     f"({type(e).__name__})") from None
    if _json_depth(obj) > MAX_JSON_DEPTH:
        raise _schema_error(shown_step, f"nested deeper than {MAX_JSON_DEPTH} levels")
    return _validate_manifest(obj, shown_step, step)


def _verify_files(step_path: Path, shown_step: str, manifest: dict) -> None:
    """Every file is present, a regular file of the recorded size, and has its digest;
    sizes and types are checked for all files before any file is opened."""
    want = manifest["files"]
    try:
        have = _walk(step_path)
    except (OSError, ValueError) as e:
        why = _why(e) if isinstance(e, OSError) else str(e)
        raise CheckpointCorruptError(f"checkpoint {shown_step}: cannot list its files "
                                     f"({why})") from None
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
            why = _why(e) if isinstance(e, OSError) else str(e)
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} cannot be read "
                                         f"({why})") from None
        if digest != want[rel][1]:
            raise CheckpointCorruptError(f"checkpoint {shown_step}: file {rel} is corrupt "
                                         f"(truncated or changed: its sha256 differs)")


def _check_like(shown_step: str, manifest: dict, like: Any) -> list:
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
                                          f"the checkpoint has {s['path']} there")
        if s["shape"] != shape or s["dtype"] != dtype:
            raise CheckpointMismatchError(
                f"checkpoint {shown_step}: {p} has shape {tuple(s['shape'])} {s['dtype']} in "
                f"the checkpoint but {tuple(shape)} {dtype} in like")
    if len(saved) > len(leaves):
        raise CheckpointMismatchError(f"checkpoint {shown_step}: holds "
                                      f"{saved[len(leaves)]['path']}, which like does not have")
    return leaves


def _target(x) -> jax.ShapeDtypeStruct | np.ndarray:
    if jax.process_count() > 1:  # restored as numpy, by this process alone (see _checkpointer)
        return np.zeros(np.shape(x), jnp.asarray(x).dtype)
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype, sharding=sharding)


def _restore(path: Path, shown: str, like: Any, step: int) -> tuple[Any, dict]:
    """Restore one verified checkpoint: ``(state, manifest)``."""
    import orbax.checkpoint as ocp

    step_path, shown_step = path / _step_name(step), os.path.join(shown, _step_name(step))
    try:
        manifest = _read_manifest(path, shown, step)
        _verify_files(step_path, shown_step, manifest)
        leaves = _check_like(shown_step, manifest, like)
        target = {k: _target(x) for k, x in _flat(leaves).items()}
        try:
            with _quiet_orbax():
                restored = _checkpointer(ocp).restore(
                    step_path / "arrays", args=ocp.args.StandardRestore(target))
        except Exception as e:  # orbax/tensorstore raise many types for damaged data
            raise CheckpointCorruptError(f"checkpoint {shown_step}: could not read arrays: "
                                         f"{_orbax_why(e)}") from e
        values = [restored[k] for k in sorted(restored)]
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


def restore(directory, like: Any, *, step: int | None = None) -> Any:
    """Load checkpoint ``step`` (default: the newest) shaped like ``like``.

    Args:
      directory: the folder given to ``save`` (any path: relative, ``~``...).
      like: a pytree with the structure, shapes and dtypes to restore into
        (e.g. a freshly created ``TrainState``); its values are not used.
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
    path, shown = _paths(directory)
    with _proc.signals_deferred():
        return _restore(path, shown, like, _resolve(path, shown, step))[0]


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
    path, shown = _paths(directory)
    return _read_manifest(path, shown, _resolve(path, shown, step))["metadata"]


def _resume_fields(meta: dict, step: int, shown_step: str) -> tuple[int, list, dict | None]:
    epoch, history, config = meta.get("epoch", step), meta.get("history", []), meta.get("config")
    if not _is_int(epoch) or epoch < 0:
        raise _schema_error(shown_step, f"metadata 'epoch' must be a non-negative int, got "
                                        f"{_type_name(epoch)}")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise _schema_error(shown_step, "metadata 'history' must be a list of dicts")
    if config is not None and not isinstance(config, dict):
        raise _schema_error(shown_step, f"metadata 'config' must be a dict, got "
                                        f"{_type_name(config)}")
    return epoch, history, config


def resume_state(directory, like: Any, *, log=print) -> tuple[Any, int, list, dict | None]:
    """Restore the newest intact checkpoint written by ``train.fit`` (holding the lock).

    Returns ``(state, epoch, history, config)`` (``config``: the run
    configuration saved with it). With no checkpoint at all it returns
    ``(like, 0, [], None)`` and says so. Any problem with a newer checkpoint
    (damaged files, a malformed manifest or metadata) is a
    ``CheckpointCorruptError``: that checkpoint is moved aside (renamed
    ``corrupt-step_...``, never deleted) with a warning in favour of an older
    intact one; if checkpoints exist but none is intact it raises
    ``CheckpointCorruptError`` and changes nothing, rather than start over.

    Args:
      directory: the checkpoint folder (any path).
      like: a pytree with the structure, shapes and dtypes to restore into
        (e.g. a fresh ``TrainState``); returned as is when there is nothing.
      log: called with one line saying where the run continues from.

    Returns:
      ``(state, epoch, history, config)``: the restored pytree, the int epoch
      stored in its metadata (default: its step), the list of per-epoch dicts
      and the configuration dict or ``None``.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> like = {"w": jnp.zeros(2)}
    >>> resume_state(d, like, log=lambda line: None)
    ({'w': Array([0., 0.], dtype=float32)}, 0, [], None)
    >>> _ = save(d, {"w": jnp.ones(2)}, step=3, metadata={"epoch": 3, "history": [{"epoch": 3}]})
    >>> state, epoch, history, config = resume_state(d, like, log=lambda line: None)
    >>> state["w"].tolist(), epoch, history, config
    ([1.0, 1.0], 3, [{'epoch': 3}], None)
    """
    path, shown = _paths(directory)
    with lock(directory, log=log):
        steps = _scan_steps(path, shown)
        if not steps:
            log(f"resume: no complete checkpoint in {shown}; starting from scratch")
            return like, 0, [], None
        damaged: list[tuple[int, CheckpointCorruptError]] = []
        for step in reversed(steps):
            shown_step = os.path.join(shown, _step_name(step))
            try:
                with _proc.signals_deferred():
                    state, manifest = _restore(path, shown, like, step)
                epoch, history, config = _resume_fields(manifest["metadata"], step, shown_step)
            except CheckpointCorruptError as e:
                damaged.append((step, e))
                continue
            except CheckpointNotFoundError:
                continue
            for bad_step, error in damaged:
                # Moved, never deleted: the user can still inspect it, and the resumed
                # run can write this step again.
                bad = path / _step_name(bad_step)
                aside = bad.with_name(f"corrupt-{bad.name}-{time.time_ns()}")
                try:
                    os.rename(bad, aside)
                except OSError as e:
                    raise CheckpointError(f"resume: could not move the damaged checkpoint "
                                          f"{os.path.join(shown, bad.name)} aside: {_why(e)} "
                                          f"({error})") from None
                log(f"warning: {error}; moved it to {aside.name}")
            log(f"resume: continuing from {shown_step} (epoch {epoch})")
            return state, epoch, list(history), config
        raise CheckpointCorruptError(f"no intact checkpoint in {shown} ({len(damaged)} "
                                     f"damaged, none changed); newest: {damaged[0][1]}")
