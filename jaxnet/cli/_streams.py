"""Printing that never costs the run: a closed or broken stdout/stderr drops the text.

``jaxnet train mnist … | head -1`` closes the pipe after one line; ``2>&-``
and ``>&-`` (cron, daemons) start the process without the stream. Either
way training goes on, and ``--json``, ``--plot`` and the checkpoints are
written: ``guard_streams`` points a closed descriptor 0/1/2 at ``/dev/null``
(so that no file jaxnet opens takes its number and receives another
library's log lines) and wraps ``sys.stdout``/``sys.stderr`` so that a write
that fails (a broken pipe, a closed descriptor, an I/O error) drops that
text and all that follows, and text the stream's encoding cannot show
(``PYTHONIOENCODING=ascii``, a path with non-UTF-8 bytes) is written with
backslash escapes. Lost output never changes the exit status.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

_LOST_ERRNOS = {errno.EPIPE, errno.EBADF, errno.EIO, errno.ECONNRESET}


class GuardedStream:
    """A text stream whose writes never raise: what cannot be written is dropped.

    Args:
      stream: the stream to write to (``None``: drop everything).

    >>> import io
    >>> out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    >>> guarded = GuardedStream(out)
    >>> guarded.write("wrote ü.json\\n")
    13
    >>> _ = out.seek(0); out.read()
    'wrote \\\\xfc.json\\n'
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self.lost = stream is None

    def write(self, text: str) -> int:
        if self.lost:
            return len(text)
        try:
            self._stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(self._stream, "encoding", None) or "ascii"
            self.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except (OSError, ValueError) as e:  # ValueError: the file was closed
            if isinstance(e, OSError) and e.errno not in _LOST_ERRNOS:
                raise
            self._lose()
        return len(text)

    def flush(self) -> None:
        if self.lost:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as e:
            if isinstance(e, OSError) and e.errno not in _LOST_ERRNOS:
                raise
            self._lose()

    def _lose(self) -> None:
        """Drop from now on; point the descriptor at /dev/null, so that the text still
        buffered and the interpreter's flush at exit do not fail again."""
        self.lost = True
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            return
        if fd in (1, 2):
            _to_devnull(fd)

    def isatty(self) -> bool:
        return not self.lost and bool(getattr(self._stream, "isatty", lambda: False)())

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, … of the stream
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def plug_closed_descriptors() -> None:
    """Open /dev/null on any of the descriptors 0, 1, 2 that the process started without."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd)


@contextlib.contextmanager
def guard_streams() -> Iterator[None]:
    """``sys.stdout``/``sys.stderr`` as ``GuardedStream``s for the ``with`` block."""
    plug_closed_descriptors()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = GuardedStream(old[0]), GuardedStream(old[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old
