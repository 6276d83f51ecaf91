"""Where things are in a checkpoint folder: step names, listing, jaxnet's work folders.

``DIR/step_<8+ digits>/`` holds one checkpoint; it is listed only once its
``manifest.json`` exists. ``DIR/.jaxnet-tmp-<32 hex>/`` is a work folder,
removable only when its ``jaxnet-owner.json`` names the same token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import uuid
from pathlib import Path
from typing import Any

from .. import _fs, _proc
from .._checks import non_negative_int
from ._errors import CheckpointError, CheckpointNotFoundError, why

MANIFEST = "manifest.json"


_PREFIX = "step_"


_STEP_NAME = re.compile(r"step_([0-9]{1,18})", re.ASCII)


LOCK = ".jaxnet-lock"


TMP = ".jaxnet-tmp-"


_TMP_NAME = re.compile(r"\.jaxnet-tmp-([0-9a-f]{32})", re.ASCII)


_OWNER = "jaxnet-owner.json"
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)


MAX_STEP = 10**18


HOST = socket.gethostname()


def paths(directory, name: str = "directory") -> tuple[Path, str]:
    """``(absolute path, the path as given)``: orbax needs absolute paths, in UTF-8.

    A folder name with other bytes is refused here, before a lock or a work
    folder is made, rather than at the first write (``ValueError``).
    """
    path, shown = _fs.user_path(directory, name=name, what="folder path")
    _fs.require_utf8(path, name=name, shown=shown, why="the checkpoint writer")
    return path, shown


def step_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def check_step(step: Any) -> int:
    step = non_negative_int("step", step)
    if step >= MAX_STEP:
        raise ValueError(f"step: expected an int below 10**18, got {step}")
    return step


def scan_steps(path: Path, shown: str) -> list[int]:
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise CheckpointError(f"checkpoint_dir: cannot list {shown}: {why(e)}") from None
    steps = []
    for entry in entries:
        match = _STEP_NAME.fullmatch(entry.name)
        if not match or entry.name != step_name(int(match[1])) \
                or not entry.is_dir(follow_symlinks=False):
            continue  # only jaxnet's own spelling, e.g. step_00000003
        try:
            if stat.S_ISREG(os.lstat(os.path.join(entry.path, MANIFEST)).st_mode):
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

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxnet.checkpoint import save
    >>> d = tempfile.mkdtemp()
    >>> for step in (2, 1):
    ...     _ = save(d, {"w": jnp.zeros(2)}, step=step)
    >>> all_steps(d)
    [1, 2]
    """
    return scan_steps(*paths(directory))


def latest_step(directory) -> int | None:
    """The newest complete checkpoint's step, or ``None``.

    Args:
      directory: the checkpoint folder (any path).

    Returns:
      int, the largest of ``all_steps(directory)``, or ``None`` if there is none.

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxnet.checkpoint import save
    >>> d = tempfile.mkdtemp()
    >>> print(latest_step(d))
    None
    >>> _ = save(d, {"w": jnp.zeros(2)}, step=5)
    >>> latest_step(d)
    5
    """
    steps = all_steps(directory)
    return steps[-1] if steps else None


def resolve(path: Path, shown: str, step: int | None) -> int:
    steps = scan_steps(path, shown)
    if step is None:
        if not steps:
            raise CheckpointNotFoundError(f"no complete checkpoint in {shown}")
        return steps[-1]
    step = check_step(step)
    if step not in steps:
        raise CheckpointNotFoundError(f"no checkpoint for step {step} in {shown}; "
                                      f"complete steps: {steps}")
    return step


def read_json_record(path: Path, cap: int = 4096) -> tuple[bytes | None, dict | None]:
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


_active_work: set[str] = set()  # tokens of this process's work folders in use


def new_work_dir(path: Path, purpose: str) -> Path:
    """A marked work folder: ``.jaxnet-tmp-<token>`` holding a ``jaxnet-owner.json`` that
    names the same token. Only such folders are ever cleaned up, so no user file can match."""
    token = uuid.uuid4().hex
    work = path / f"{TMP}{token}"
    work.mkdir()
    _active_work.add(token)
    owner = {"jaxnet": f"temporary folder ({purpose}); jaxnet removes it", "token": token,
             "host": HOST, "pid": os.getpid(), "start": _proc.start_ticks(os.getpid())}
    try:
        _fs.write_new(work / _OWNER, json.dumps(owner).encode())
    except BaseException:
        _active_work.discard(token)
        with contextlib.suppress(OSError):
            work.rmdir()
        raise
    return work


def remove_work_dir(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)  # what is left stays marked: removed next time
    _active_work.discard(work.name[len(TMP):])


def clean_work_dirs(path: Path) -> None:
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
        _, owner = read_json_record(Path(entry.path) / _OWNER)
        if owner is None or owner.get("token") != match[1]:
            continue
        if owner.get("host") == HOST and owner.get("pid") != os.getpid() \
                and _proc.process_alive(owner.get("pid"), owner.get("start")):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
