"""Reading IDX files (MNIST's format) with bounded memory: the one reader ``datasets`` uses.

``read_idx(path, shown, ndim)`` parses ``magic 0x0000 08 ndim``, big-endian
dimensions, then uint8 data, from a plain or gzip file; it never blocks on a
FIFO, refuses a header that declares more than ``max_idx_bytes()`` (the
environment variable ``JAXNET_MAX_DATA_BYTES``, default a quarter of the
memory, at most 2 GiB) before it allocates anything, and never decompresses
past what the header declares.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import stat
import zlib
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20
_GZIP_MAX_RATIO = 1032  # deflate never expands one byte into more than ~1032


MAX_DATA_BYTES_ENV = "JAXNET_MAX_DATA_BYTES"


def max_idx_bytes() -> int:
    """The most data bytes one IDX file may declare: ``$JAXNET_MAX_DATA_BYTES`` if set,
    else a quarter of this machine's memory, at most 2 GiB (MNIST's largest file is 47 MB).

    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {MAX_DATA_BYTES_ENV: "1000"}):
    ...     max_idx_bytes()
    1000
    >>> with mock.patch.dict(os.environ, {MAX_DATA_BYTES_ENV: "lots"}):
    ...     max_idx_bytes()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: JAXNET_MAX_DATA_BYTES: expected a positive number of bytes, got 'lots'; ...
    """
    given = os.environ.get(MAX_DATA_BYTES_ENV)
    if given is not None:
        text = given.strip().replace("_", "")
        if not text.isdigit() or int(text) <= 0:
            raise ValueError(f"{MAX_DATA_BYTES_ENV}: expected a positive number of bytes, got "
                             f"{given!r}; set it to an integer such as {4 << 30}, or unset it "
                             f"for the default")
        return int(text)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        memory = 0
    return min(2 << 30, memory // 4) if memory > 0 else 2 << 30


def _read_exact(stream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_idx(path: Path, shown: str, ndim: int, *,
              compressed: bool | None = None) -> tuple[np.ndarray, str]:
    """Parse an IDX file (magic ``0x0000 08 ndim``, uint8, big-endian dims, then the data).

    Returns ``(array, sha256 of the decompressed bytes)``. Never blocks on a
    FIFO, never decompresses more than the header declares plus one byte.
    """
    compressed = path.name.endswith(".gz") if compressed is None else compressed
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ValueError(f"{shown}: cannot be read ({e.strerror or e})") from None
    with open(fd, "rb", closefd=True) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{shown}: not a regular file (a FIFO, device or folder); expected "
                             f"an IDX file")
        stream = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        header_size = 4 + 4 * ndim
        try:
            header = _read_exact(stream, header_size)
            if len(header) < header_size:
                raise ValueError(f"{shown}: truncated IDX header: {len(header)} bytes, expected "
                                 f"at least {header_size}")
            magic = int.from_bytes(header[:4], "big")
            if magic != 0x0800 + ndim:
                raise ValueError(f"{shown}: bad magic number {magic}, expected {0x0800 + ndim} "
                                 f"(uint8 IDX with {ndim} dimension(s)); is it the right file?")
            dims = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big")
                         for i in range(ndim))
            size = math.prod(dims)
            limit = max_idx_bytes()
            if size > limit:
                raise ValueError(f"{shown}: its header declares dimensions {dims}, {size} bytes: "
                                 f"more than the {limit} jaxnet reads from one file "
                                 f"({MAX_DATA_BYTES_ENV}); refusing to read it; set "
                                 f"{MAX_DATA_BYTES_ENV}={size} to read it if this machine has "
                                 f"the memory")
            if not compressed and st.st_size - header_size != size:
                raise ValueError(f"{shown}: {st.st_size - header_size} data bytes after the "
                                 f"header, expected {size} for dimensions {dims} (truncated or "
                                 f"padded file)")
            if compressed and size > st.st_size * _GZIP_MAX_RATIO + (1 << 16):
                raise ValueError(f"{shown}: its header declares {size} bytes for dimensions "
                                 f"{dims}, more than its {st.st_size} compressed bytes can hold "
                                 f"(truncated file)")
            buf = bytearray(size)
            view, got = memoryview(buf), 0
            while got < size:
                n = stream.readinto(view[got:got + _CHUNK])
                if not n:
                    break
                got += n
            if got < size:
                raise ValueError(f"{shown}: {got} data bytes after the header, expected {size} "
                                 f"for dimensions {dims} (truncated or padded file)")
            if stream.read(1):
                raise ValueError(f"{shown}: more data than the {size} bytes its header declares "
                                 f"for dimensions {dims} (padded file, or not an IDX file); "
                                 f"stopped reading")
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{shown}: cannot be read as an IDX file ({type(e).__name__}: "
                             f"{e})") from None
    digest = hashlib.sha256(header)
    digest.update(buf)
    return np.frombuffer(buf, dtype=np.uint8).reshape(dims), digest.hexdigest()
