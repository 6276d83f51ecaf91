"""Warm starts: JAX's persistent compilation cache in a folder jaxnet checks.

A second run of the same script or command loads its compiled XLA programs
from disk instead of compiling them again. The folder:

* ``$JAXNET_COMPILATION_CACHE`` if set (``~`` expanded, relative to the
  current folder); ``off``/``0``/``false``/``no`` turn the cache off; unset,
  ``$XDG_CACHE_HOME/jaxnet/xla`` or ``~/.cache/jaxnet/xla``. The CLI's
  ``--compile-cache`` takes the same values and wins over the variable.
* A folder JAX's own ``jax_compilation_cache_dir`` (or
  ``JAX_COMPILATION_CACHE_DIR``) already names is used as the user set it:
  jaxnet leaves it and its files alone.

JAX reads an entry by its key (a hash of the program) and trusts its bytes: an
entry truncated, damaged or holding another program's code would crash the run
or compute something else. So jaxnet records the SHA-256 of every entry this
process's JAX wrote (``jaxnet-verified.json``, sealed at exit, only complete
entries) and, when the cache is enabled, removes every entry of the folder
whose bytes do not match that record before JAX can read it: a damaged or
foreign entry costs a recompile, never a wrong result. Files not named like
JAX's entries (``*-cache``) are left alone.

Size: at most ``$JAXNET_COMPILATION_CACHE_MAX_BYTES`` (default 1 GiB) of
entries are kept; the oldest-written go first, checked at each start (JAX's
own bound needs the ``filelock`` package). The folder never fails a run: one
that cannot be created or written is one warning and a run without the cache.
Results are bit-identical with and without it (XLA's executable is the same
program). Several processes may share one folder (a record lost to a race
costs a recompile). The record finds damage, not an attacker: as JAX warns,
whoever can write the folder can run code in your runs; it is created 0700.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import json
import logging
import os
import re
import stat
import uuid
import zlib
from pathlib import Path

from . import _fs

ENV = "JAXNET_COMPILATION_CACHE"
ENV_MAX_BYTES = "JAXNET_COMPILATION_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30
MANIFEST = "jaxnet-verified.json"
_OFF = ("off", "0", "false", "no")
_SUFFIX = "-cache"  # JAX's entry files: <module>-<sha256 key>-cache
# Only a file named exactly so (and not a link) is ever removed unverified: a folder the user
# names may hold their own files that merely end in -cache (project-cache, a link).
_JAX_NAME = re.compile(r".+-[0-9a-f]{64}-cache", re.ASCII)
_MANIFEST_CAP = 64 << 20

logger = logging.getLogger(__name__)
# The process's choice: the folder jaxnet gave JAX (None: none), the entries present
# when it did (not this process's to seal), whether the choice is made, warnings given.
_state: dict = {"folder": None, "present": set(), "decided": False, "warned": set(),
                "atexit": False}


def default_folder(environ=None) -> Path:
    """``$XDG_CACHE_HOME/jaxnet/xla``, or ``~/.cache/jaxnet/xla`` (absolute).

    >>> default_folder({"XDG_CACHE_HOME": "/tmp/c"}).as_posix()
    '/tmp/c/jaxnet/xla'
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "jaxnet" / "xla"


def resolve(setting: str | None = None, *, environ=None, name: str | None = None
            ) -> Path | None:
    """The cache folder a setting names (absolute), or ``None`` for off.

    Args:
      setting: ``--compile-cache``'s value; ``None``: ``$JAXNET_COMPILATION_CACHE``'s.
      environ: the environment (default ``os.environ``).
      name: the setting's name in messages (default the variable's).

    Returns:
      ``None`` for ``off``/``0``/``false``/``no`` (any case); else the folder,
      ``~`` expanded and relative to the current folder; unset: ``default_folder``.

    >>> resolve(environ={"JAXNET_COMPILATION_CACHE": "OFF"}) is None
    True
    >>> resolve("/tmp/xla").as_posix()
    '/tmp/xla'
    >>> resolve(environ={"JAXNET_COMPILATION_CACHE": ""})
    Traceback (most recent call last):
    ...
    ValueError: JAXNET_COMPILATION_CACHE: expected a folder or off, got ''; ...
    """
    environ = os.environ if environ is None else environ
    if setting is None:
        if ENV not in environ:
            return default_folder(environ)
        setting, name = environ[ENV], name or ENV
    name = name or ENV
    if setting.strip().lower() in _OFF:
        return None
    if not setting.strip():
        raise ValueError(f"{name}: expected a folder or off, got {setting!r}; unset it for "
                         f"the default {default_folder(environ)}, or give a folder (. for "
                         f"the current one)")
    folder = _fs.user_path(setting, name=name, what="folder or off")[0]
    _fs.require_utf8(folder, name=name, shown=setting, why="XLA's compilation cache")
    return folder


def max_bytes(environ=None) -> int:
    """The cache's bound in bytes: ``$JAXNET_COMPILATION_CACHE_MAX_BYTES`` or 1 GiB.

    >>> max_bytes({}), max_bytes({"JAXNET_COMPILATION_CACHE_MAX_BYTES": "1000000"})
    (1073741824, 1000000)
    >>> max_bytes({"JAXNET_COMPILATION_CACHE_MAX_BYTES": "1G"})
    Traceback (most recent call last):
    ...
    ValueError: JAXNET_COMPILATION_CACHE_MAX_BYTES: expected a positive int of bytes ...
    """
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_MAX_BYTES)
    if text is None:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{ENV_MAX_BYTES}: expected a positive int of bytes (such as "
                         f"{DEFAULT_MAX_BYTES} for 1 GiB), got {text!r}")
    return value


def enable(setting: str | None = None, *, again: bool = False) -> Path | None:
    """Give JAX the cache folder (once per process; a ``setting`` decides again).

    Args:
      setting: ``--compile-cache``'s value, which wins over the variable;
        ``None``: keep this process's choice, or make it from the environment.
      again: decide from the environment even if this process has decided (the CLI).

    Returns:
      The folder JAX caches in (the user's own JAX setting included), or
      ``None`` (off, or the folder unusable: one warning).

    Raises:
      ValueError: an empty setting, or a bad ``$JAXNET_COMPILATION_CACHE_MAX_BYTES``.
    """
    import jax

    if setting is None and not again and _state["decided"]:
        return _state["folder"] or _users_folder(jax)
    ours = _state["folder"]
    theirs = jax.config.jax_compilation_cache_dir
    if theirs is not None and (ours is None or theirs != str(ours)):
        _state["decided"] = True
        # Said out loud only when --compile-cache asked for something else.
        ignored = ENV if setting is None else f"--compile-cache {setting}"
        _once(logging.DEBUG if setting is None else logging.INFO,
              f"compile cache: JAX's own jax_compilation_cache_dir {theirs} ({ignored} is "
              f"not used)")
        return Path(theirs)
    folder = resolve(setting, name=None if setting is None else "--compile-cache")
    limit = max_bytes()
    _state["decided"] = True
    if folder == ours:
        return ours
    if folder is not None:
        try:
            present = _prepare(folder, limit)
        except OSError as e:
            _once(logging.WARNING, f"compile cache: cannot use {folder} "
                                   f"({e.strerror or e}); running without it (--compile-cache "
                                   f"off or {ENV}=off silences this)")
            folder = None
    _give_jax(jax, folder)
    _state["folder"] = folder
    if folder is not None:
        _state["present"] = present
        if not _state["atexit"]:
            atexit.register(seal)
            _state["atexit"] = True
    return folder


def _users_folder(jax) -> Path | None:
    theirs = jax.config.jax_compilation_cache_dir
    return None if theirs is None else Path(theirs)


def _give_jax(jax, folder: Path | None) -> None:
    """Point JAX at ``folder`` (``None``: no cache), with every program worth caching."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    if _state["folder"] is not None:  # JAX opens its folder once: forget the old one
        cc.reset_cache()
    if folder is None:
        jax.config.update("jax_compilation_cache_dir", None)
        return
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_dir", str(folder))


def _once(level: int, message: str) -> None:
    if message not in _state["warned"]:
        _state["warned"].add(message)
        logger.log(level, message)


def _entries(folder: Path) -> dict[str, os.stat_result]:
    """JAX's entry files in ``folder`` (links included: JAX would follow them)."""
    out = {}
    for entry in os.scandir(folder):
        if entry.name.endswith(_SUFFIX):
            try:
                out[entry.name] = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed meanwhile (another process)
                pass
    return out


def _digest(path: Path) -> str | None:
    """SHA-256 of a regular file's bytes; ``None`` for a link, a folder or a vanished file."""
    try:
        return hashlib.sha256(_fs.read_bounded(path, _MANIFEST_CAP * 64)).hexdigest()
    except (OSError, ValueError):
        return None


def _read_manifest(folder: Path) -> dict[str, str]:
    try:
        data = json.loads(_fs.read_bounded(folder / MANIFEST, _MANIFEST_CAP))
        entries = data["entries"]
        return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # missing or damaged: every entry is unverified


def _write_manifest(folder: Path, entries: dict[str, str]) -> None:
    text = json.dumps({"version": 1, "entries": dict(sorted(entries.items()))}, indent=0)
    _fs.write_atomic(folder / MANIFEST, lambda tmp: tmp.write_text(text), overwrite=True)


def _remove(folder: Path, name: str) -> None:
    try:
        os.unlink(folder / name)
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # not a file JAX wrote: left alone
        pass


def _prepare(folder: Path, limit: int) -> set[str]:
    """Create and probe ``folder``; drop unverified entries and the oldest above ``limit``.

    Returns:
      The entry names left (this process seals only entries written after them).
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    probe = folder / f".jaxnet-probe-{uuid.uuid4().hex}"
    _fs.write_new(probe, b"")
    probe.unlink()
    manifest = _read_manifest(folder)
    kept: dict[str, os.stat_result] = {}
    for name, st in _entries(folder).items():
        if stat.S_ISDIR(st.st_mode):
            continue
        if manifest.get(name) is not None and stat.S_ISREG(st.st_mode) \
                and _digest(folder / name) == manifest[name]:
            kept[name] = st
        elif (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) \
                and _JAX_NAME.fullmatch(name):
            _remove(folder, name)  # damaged, foreign, half-written or unsealed: JAX must not
            # load it (a link JAX would follow: unlinked, its target kept); any other file
            # (the user's, their own link) is left alone, and JAX never asks for its name
    total = sum(st.st_size for st in kept.values())
    for name in sorted(kept, key=lambda n: (kept[n].st_mtime_ns, n)):
        if total <= limit:
            break
        _remove(folder, name)
        total -= kept.pop(name).st_size
    verified = {name: manifest[name] for name in kept}
    if verified != manifest:
        _write_manifest(folder, verified)
    return set(kept)


def _complete(data: bytes) -> bool:
    """Whether ``data`` is one whole compressed stream, as JAX writes (zlib or zstd)."""
    d = zlib.decompressobj()
    try:
        d.decompress(data)
        return d.eof and not d.unused_data
    except zlib.error:
        pass
    for module in ("compression.zstd", "zstandard"):
        try:
            zstd = importlib.import_module(module)
        except ImportError:
            continue
        try:
            zstd.decompress(data)
            return True
        except Exception:  # noqa: BLE001  # any error: not a whole stream
            return False
    return False


def seal() -> int:
    """Record the SHA-256 of the complete entries written since ``enable`` (run at exit).

    Returns:
      How many entries were recorded (0 when the cache is off or the folder fails).
    """
    folder = _state["folder"]
    if folder is None or not folder.is_dir():  # off, or the folder removed since
        return 0
    try:
        now = _entries(folder)
        new = {}
        for name in set(now) - _state["present"]:
            if not stat.S_ISREG(now[name].st_mode):
                continue
            try:
                data = _fs.read_bounded(folder / name, _MANIFEST_CAP * 64)
            except (OSError, ValueError):
                continue
            if _complete(data):
                new[name] = hashlib.sha256(data).hexdigest()
        manifest = _read_manifest(folder)  # as late as possible: another process's records
        entries = {k: v for k, v in {**manifest, **new}.items() if k in now}
        if entries != manifest:
            _write_manifest(folder, entries)
        _state["present"] |= set(new)
        return len(new)
    except OSError as e:  # never fails a run: the entries are recompiled next time
        _once(logging.WARNING, f"compile cache: cannot record the new entries in {folder} "
                               f"({e.strerror or e}); they are compiled again next run")
        return 0
