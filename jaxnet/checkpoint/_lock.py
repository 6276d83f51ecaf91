"""The writer lock: one process writes a checkpoint folder at a time.

``DIR/.jaxnet-lock`` is created atomically and records host, pid and process
start time. Re-entrant within a process; a forked child holds nothing. A lock
left by a dead process of this host is recovered (and said so); one from
another host is never taken over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import _fs, _proc
from ._errors import CheckpointError, CheckpointLockedError, why
from ._layout import HOST, LOCK, paths, read_json_record

logger = logging.getLogger(__name__)


_held: dict[str, list] = {}  # lock file -> [pid, depth, token] of this process


_held_guard = threading.RLock()


def _holder(record: dict | None, lockfile: Path) -> str:
    """``live`` | ``stale`` | ``foreign`` | ``starting`` | ``unreadable``."""
    if record is None:
        try:
            age = time.time() - os.lstat(lockfile).st_mtime
        except OSError:
            return "starting"
        return "starting" if age < 30 else "unreadable"
    if record.get("host") != HOST:
        return "foreign" if isinstance(record.get("host"), str) else "unreadable"
    alive = _proc.process_alive(record.get("pid"), record.get("start"))
    if alive is None:
        return "unreadable"
    if not alive or record.get("pid") == os.getpid():
        return "stale"  # our own pid, yet we do not hold it: left by an earlier process
    return "live"


def _locked_message(name: str, shown: str, record: dict | None, state: str) -> str:
    lockfile = os.path.join(shown, LOCK)
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
    lockfile = path / LOCK
    with _dir_guard(path):
        raw, record = read_json_record(lockfile)
        if raw is None:
            return  # released meanwhile: try again
        state = _holder(record, lockfile)
        if state != "stale":
            raise CheckpointLockedError(_locked_message(name, shown, record, state))
        os.unlink(lockfile)
    log(f"checkpoint: removed a stale lock in {shown}: process {record['pid']} on this host "
        f"({HOST}) no longer runs")


def _acquire(path: Path, shown: str, name: str, log: Callable[[str], Any]) -> str:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"{name}: could not write {shown}: {why(e)}") from None
    token = uuid.uuid4().hex
    record = {"jaxnet": "checkpoint folder lock", "host": HOST, "pid": os.getpid(),
              "start": _proc.start_ticks(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "token": token, "command": " ".join(sys.argv)[:300]}
    lockfile = path / LOCK
    data = json.dumps(record).encode()
    for _ in range(5):
        try:
            _fs.write_new(lockfile, data)
        except FileExistsError:
            _recover_or_raise(path, shown, name, log)
            continue
        except OSError as e:
            raise CheckpointError(f"{name}: could not write the lock file "
                                  f"{os.path.join(shown, LOCK)}: {why(e)}") from None
        return token
    raise CheckpointLockedError(f"{name}: {shown}: another process keeps taking the lock; "
                                f"wait for it or use another folder")


def _release(path: Path, token: str) -> None:
    lockfile = path / LOCK
    _, record = read_json_record(lockfile)
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

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxnet.checkpoint import save
    >>> d = tempfile.mkdtemp()
    >>> with lock(d):
    ...     with lock(d):  # re-entrant
    ...         _ = save(d, {"w": jnp.zeros(2)}, step=1)
    """
    path, shown = paths(directory, name)
    key = str(path / LOCK)
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


def check_unlocked(path: Path, shown: str, name: str) -> None:
    """Raise ``CheckpointLockedError`` if a live process (or another host) holds the lock."""
    if _holds(str(path / LOCK)):
        return
    raw, record = read_json_record(path / LOCK)
    if raw is None:
        return
    state = _holder(record, path / LOCK)
    if state != "stale":  # a stale lock is recovered, and reported, when taken
        raise CheckpointLockedError(_locked_message(name, shown, record, state))
