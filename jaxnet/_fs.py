"""File primitives: the one home of user paths, bounded reads and safe writes.

* ``user_path``: ``(absolute Path, the path as the user gave it)`` — ``~``
  expanded, relative paths kept relative in messages.
* ``open_regular`` / ``read_bounded``: open or read a regular file only (never
  follows a link, never blocks on a FIFO), with a size cap.
* ``write_new``: create a file that must not exist yet, flushed to disk.
* ``write_atomic``: temp file beside the target → fsync → rename (or link, so
  nothing is ever overwritten unless asked) → fsync the folder; the temp file
  is removed on any failure.
* ``fsync_dir``: make a rename or create in a folder durable.

Callers keep their own error messages: these raise plain ``OSError`` /
``ValueError`` / ``FileExistsError`` for them to catch and re-word. The
fault-injection tests patch these functions, so callers use them as
``_fs.write_new(...)``, not ``from ._fs import write_new``.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_dir", "open_regular", "read_bounded", "require_utf8", "user_path",
           "write_atomic", "write_new"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of hanging
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def user_path(value, *, name: str, what: str = "path") -> tuple[Path, str]:
    """``(absolute path for the file system, the path as given, for messages)``.

    Args:
      value: a str, bytes or ``os.PathLike`` the user gave (relative, ``~``, any name).
      name: the argument's name in messages, e.g. ``"directory"``.
      what: what the argument names, e.g. ``"folder path"``.

    Returns:
      ``(Path, str)``: ``~`` expanded and made absolute; the text as given.

    >>> import os
    >>> path, shown = user_path("~/runs/a", name="directory")
    >>> shown, path == Path(os.path.expanduser("~/runs/a"))
    ('~/runs/a', True)
    >>> user_path("", name="directory", what="folder path")
    Traceback (most recent call last):
    ...
    ValueError: directory: expected a folder path, got ''
    """
    try:
        shown = os.fspath(value)
    except TypeError:
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got "
                        f"{type(value).__name__}") from None
    if isinstance(shown, bytes):
        shown = os.fsdecode(shown)
    if not shown:
        raise ValueError(f"{name}: expected a {what}, got ''")
    return Path(os.path.expanduser(shown)).absolute(), shown


def require_utf8(path, *, name: str, shown: str, why: str) -> None:
    """``ValueError`` unless ``path``'s bytes are UTF-8 (what a writer such as orbax accepts).

    A ``str`` with surrogate escapes (``os.fsdecode(b"\\xff")``) or ``bytes``
    that are not UTF-8 name a folder that Python can create but C++ writers
    cannot: checked before anything starts, not at the first write.

    Args:
      path: the path (str, bytes or ``os.PathLike``).
      name: the argument's name in the message, e.g. ``"checkpoint_dir"``.
      shown: the path as the user gave it.
      why: what refuses other bytes, e.g. ``"the checkpoint writer"``.

    >>> require_utf8("ck", name="checkpoint_dir", shown="ck", why="orbax")
    >>> bad = os.fsdecode(b"ck\\xff")
    >>> require_utf8(bad, name="checkpoint_dir", shown=bad, why="the checkpoint writer")
    Traceback (most recent call last):
    ...
    ValueError: checkpoint_dir: expected a path in UTF-8 (the checkpoint writer accepts no \
other bytes), got 'ck\\udcff'; choose another folder name
    """
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{name}: expected a path in UTF-8 ({why} accepts no other bytes), "
                         f"got {ascii(shown)}; choose another folder name") from None


def fsync_dir(path: Path) -> None:
    """Flush folder ``path``'s entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(path: Path, *, size: int | None = None) -> int:
    """An fd on ``path`` if it is a regular file (of ``size`` bytes).

    Never follows a final symlink and never blocks on a FIFO.

    Args:
      path: the file.
      size: if given, the size in bytes the file must have.

    Returns:
      An open read-only fd (the caller closes it).

    Raises:
      OSError (missing, a link...), ValueError (not a regular file, other size).
    """
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _NOFOLLOW | _CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
        os.close(fd)
        raise ValueError("not a regular file" if not stat.S_ISREG(st.st_mode)
                         else f"{st.st_size} bytes, expected {size}")
    return fd


def read_bounded(path: Path, cap: int) -> bytes:
    """The bytes of regular file ``path``, at most ``cap`` of them.

    Args:
      path: the file (see ``open_regular``).
      cap: the most bytes accepted; a larger file is a ``ValueError``.

    Returns:
      The file's bytes.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_new(f, b"hello")
    >>> read_bounded(f, 5)
    b'hello'
    >>> read_bounded(f, 4)
    Traceback (most recent call last):
    ...
    ValueError: 5 bytes, more than the 4 allowed
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > cap:
            raise ValueError(f"{size} bytes, more than the {cap} allowed")
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > cap:  # it grew while being read
            raise ValueError(f"more than the {cap} bytes allowed")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data``, flushed to disk; never replaces anything.

    Args:
      path: the file to create; ``FileExistsError`` if anything has that name.
      data: its bytes.

    A failed write removes the file it created, so a half-written one is never left.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(path)  # ours: created just above
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_new(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless that exists (``FileExistsError``)."""
    try:
        os.link(tmp, target)  # atomic, and fails if the target appeared meanwhile
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(tmp, target)


def write_atomic(target: Path, write: Callable[[Path], None], *, overwrite: bool) -> None:
    """Write ``target`` all at once: it is whole or absent, never half-written.

    ``write(tmp)`` writes a temporary file beside ``target``; it is flushed,
    then renamed into place, and the folder flushed. Without ``overwrite`` an
    existing ``target`` is never replaced (not even one that appears during the
    write): ``FileExistsError``. The temporary file is removed on any failure.

    Args:
      target: the file to write (its folder must exist).
      write: called with the temporary file's path; creates and writes it.
      overwrite: whether an existing ``target`` may be replaced.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "out.json"
    >>> write_atomic(f, lambda tmp: tmp.write_text("{}"), overwrite=False)
    >>> write_atomic(f, lambda tmp: tmp.write_text("[]"), overwrite=False)
    Traceback (most recent call last):
    ...
    FileExistsError: ...
    >>> f.read_text(), sorted(p.name for p in f.parent.iterdir())
    ('{}', ['out.json'])
    """
    tmp = target.with_name(f".jaxnet-out-{uuid.uuid4().hex}")
    try:
        write(tmp)
        _fsync_file(tmp)
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_new(tmp, target)
        fsync_dir(target.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
