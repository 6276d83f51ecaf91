"""The private primitives every writer shares: ``jaxnet._fs`` and ``jaxnet._proc``."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from jaxnet import _fs, _proc


def test_write_atomic_never_overwrites_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.json"
    _fs.write_atomic(target, lambda tmp: tmp.write_text("first"), overwrite=False)
    with pytest.raises(FileExistsError):
        _fs.write_atomic(target, lambda tmp: tmp.write_text("second"), overwrite=False)
    assert target.read_text() == "first"
    _fs.write_atomic(target, lambda tmp: tmp.write_text("third"), overwrite=True)
    assert target.read_text() == "third"
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_atomic_removes_its_temp_file_when_the_write_fails(tmp_path):
    def full(tmp):
        tmp.write_bytes(b"{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left"):
        _fs.write_atomic(tmp_path / "out.json", full, overwrite=False)
    assert os.listdir(tmp_path) == []


def test_write_new_refuses_an_existing_name_and_cleans_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "a"
    _fs.write_new(path, b"x")
    with pytest.raises(FileExistsError):
        _fs.write_new(path, b"y")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "io")))
    with pytest.raises(OSError):
        _fs.write_new(tmp_path / "b", b"y")
    assert sorted(os.listdir(tmp_path)) == ["a"] and path.read_bytes() == b"x"


def test_read_bounded_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        _fs.read_bounded(fifo, 10)


def test_user_path_keeps_the_text_as_given():
    path, shown = _fs.user_path("rel dir/ü", name="directory")
    assert shown == "rel dir/ü" and path == (os.getcwd() / __import__("pathlib").Path(shown))
    with pytest.raises(TypeError, match="^directory: expected a path"):
        _fs.user_path(3, name="directory")


def test_a_dead_or_reused_pid_is_not_alive():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = _proc.start_ticks(proc.pid)
    proc.wait()
    assert _proc.process_alive(proc.pid, start) is False
    me = os.getpid()
    assert _proc.process_alive(me, _proc.start_ticks(me)) is True
    assert _proc.process_alive(me, (_proc.start_ticks(me) or 0) + 1) is False  # reused pid
    assert _proc.process_alive(True, None) is None


def test_signals_deferred_delivers_sigint_after_the_block():
    # Python's own Ctrl-C handler, whatever this process inherited: started in the
    # background of a script (`cmd &`, no job control) SIGINT arrives ignored, Python
    # installs no handler, and the deferred signal is rightly dropped (the row below).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with _proc.signals_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("finished")
        assert done == ["finished"]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_signals_deferred_keeps_an_ignored_sigint_ignored():
    """A process that ignores SIGINT (nohup'd or backgrounded by a script) still ignores
    it after a deferred block: the block restores the disposition, it does not invent one."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        done = []
        with _proc.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("finished")
        assert done == ["finished"]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
