"""The checkpoint exceptions, and ``why``: an OS error as one line for their messages."""

from __future__ import annotations

import errno
import os

__all__ = ["CheckpointCorruptError", "CheckpointError", "CheckpointExistsError",
           "CheckpointLockedError", "CheckpointMismatchError", "CheckpointNonFiniteError",
           "CheckpointNotFoundError", "why"]


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


class CheckpointNonFiniteError(CheckpointError, FloatingPointError):
    """A checkpoint to resume holds NaN/Inf (saved with ``check_finite=False``); the
    message names the step, the values and the flag."""


for _cls in (CheckpointError, CheckpointNotFoundError, CheckpointCorruptError,
             CheckpointMismatchError, CheckpointExistsError, CheckpointLockedError,
             CheckpointNonFiniteError):
    _cls.__module__ = "jaxnet.checkpoint"  # raised and caught as jaxnet.checkpoint.X
del _cls


def why(e: BaseException) -> str:
    """``No space left on device (ENOSPC)`` for an OSError; the first line otherwise."""
    if isinstance(e, OSError) and e.errno:
        return f"{e.strerror or os.strerror(e.errno)} ({errno.errorcode.get(e.errno, e.errno)})"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
