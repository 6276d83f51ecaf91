"""Fault injection (issue 8): every fault as one row of a table.

Each case prepares a fault in a workspace that also holds the user's own files
(a JSON file, a dataset, a checkpoint folder with folders of the user's that
merely look temporary), runs one call — the Python API, the command in this
process, or real subprocesses that are sent signals or hold a lock — and
asserts a one-line error (type and message) or a correct result, and that
no file the user had was changed or deleted (sha256 before and after).

Disk full is a real 64 KiB tmpfs when the tests run as root and may mount
one; otherwise ``ENOSPC`` is injected at the write. Permission denied is
injected at the write when running as root (root ignores file modes).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import ROOT
from jaxnet import _compile_cache, _fs, checkpoint, cli, datasets

STATE = {"b": np.arange(3, dtype=np.int32), "w": np.arange(12, dtype=np.float32).reshape(4, 3)}
CK = "ck"
STEP1 = f"{CK}/step_00000001"
ST2 = f"{CK}/step_00000002"  # moved aside (never deleted) when damaged
# The user's folders inside the checkpoint folder that only look like jaxnet's.
USER_LOOKALIKES = (".tmp-foo", ".tmp-step_00000002-99999999999999999999999",
                   ".jaxnet-tmp-notes", ".jaxnet-tmp-0123456789abcdef0123456789abcdef",
                   "step_123456789012345678901234")
TINY = ["--data-dir", "data", "--hidden", "16", "--batch-size", "64", "--val-split", "64",
        "--epochs", "1", "--no-progress"]


class CliFailed(Exception):
    """The command exited non-zero; the message is ``exit N: <stderr>``."""


@dataclass
class Case:
    id: str
    call: Callable[[Path], Any]
    error: type | None = None  # None: the call must succeed, and ``check`` holds
    match: str = ""
    check: Callable[[Path, Any], None] | None = None
    setup: Callable[[Path], None] | None = None
    may_change: tuple[str, ...] = ()  # files the case is about (e.g. a checkpoint it damages)


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_dataset(folder: Path, n_train=256, n_test=64, size=28, top_label=9) -> None:
    """A small dataset in MNIST's four-file layout (not MNIST's content)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, top_label + 1, n).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def cli_run(*args: str, expect: int = 0):
    """Run ``jaxnet train mnist`` in this process; raise ``CliFailed`` on a non-zero exit,
    after checking that a failure is one ``jaxnet: error:`` line (or argparse's usage)."""
    def call(ws):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(["train", "mnist", *args])
            except SystemExit as e:
                code = e.code
        stderr = err.getvalue()
        assert "Traceback" not in stderr
        if code:
            if not stderr.startswith("usage:"):
                lines = stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("jaxnet: error: "), stderr
            raise CliFailed(f"exit {code}: {stderr.strip()}")
        return out.getvalue()
    return call


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        for name in dirnames:  # empty folders count too
            out.setdefault(str(Path(dirpath, name).relative_to(root)) + "/", "folder")
    return out


def manifest_path(ws: Path, step=1) -> Path:
    return ws / CK / f"step_{step:08d}" / "manifest.json"


def edit_manifest(edit: Callable[[dict], Any]):
    def setup(ws):
        path = manifest_path(ws)
        new = edit(json.loads(path.read_text()))
        path.write_text(new if isinstance(new, str) else json.dumps(new))
    return setup


def array_file(ws: Path, step=1) -> Path:
    files = [p for p in (ws / CK / f"step_{step:08d}" / "arrays").rglob("*")
             if p.is_file() and p.stat().st_size > 100]
    return max(files, key=lambda p: p.stat().st_size)


def restore(ws):
    return checkpoint.restore(CK, like=STATE)


def ok(*conditions) -> None:
    """Assert every condition (for the ``check`` lambdas of the table)."""
    assert all(conditions), conditions


def same(state) -> bool:
    return all(np.array_equal(state[k], STATE[k]) for k in STATE)


def same_state(ws, result):
    ok(same(result))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def jaxnet_lock_record(**fields) -> str:
    import socket

    record = {"host": socket.gethostname(), "pid": os.getpid(), "since": "earlier"}
    record.update(fields)
    return json.dumps(record)


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str):
    """A small tmpfs at ``path`` (root only); yields False where mounting is not permitted."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    if proc.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


BIG = {"w": np.random.default_rng(0).normal(size=(256, 1024)).astype(np.float32)}


def _enospc_at_orbax(monkeypatch):
    import orbax.checkpoint as ocp

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ocp.Checkpointer, "save", full)


def save_on_full_disk(ws):
    """Save a 1 MiB checkpoint where only 64 KiB fit: ``CheckpointError``, earlier intact."""
    with mounted_tmpfs(ws / "disk", "64k") as real, pytest.MonkeyPatch.context() as mp:
        if not real:
            _enospc_at_orbax(mp)
        checkpoint.save("disk/ck", STATE, step=1)
        try:
            checkpoint.save("disk/ck", BIG, step=2)
        finally:
            assert checkpoint.all_steps("disk/ck") == [1]
            assert same(checkpoint.restore("disk/ck", like=STATE))
            assert sorted(os.listdir(ws / "disk" / "ck")) == ["step_00000001"]  # no lock, no tmp


def inject(target: str, exc: OSError, when: Callable[..., bool] = lambda *a, **k: True):
    """Make the file primitive ``jaxnet._fs.<target>`` raise ``exc`` (when ``when(args)``)
    during a call."""
    def wrap(call):
        def run(ws):
            original = getattr(_fs, target)

            def failing(*args, **kwargs):
                if when(*args, **kwargs):
                    raise exc
                return original(*args, **kwargs)

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(_fs, target, failing)
                return call(ws)
        return run
    return wrap


def save2(ws):
    return checkpoint.save(CK, STATE, step=2, keep=1)


def after_failed_save(ws, steps=(1,)):
    assert checkpoint.all_steps(CK) == list(steps)
    assert not [p for p in os.listdir(ws / CK) if p.startswith(".jaxnet-tmp-")
                and p not in USER_LOOKALIKES] and not (ws / CK / ".jaxnet-lock").exists()


def checked(call, then):
    """Run ``call`` expecting its error, then run ``then(ws)`` (state afterwards), re-raise."""
    def run(ws):
        try:
            call(ws)
        finally:
            then(ws)
    return run


HOLDER = textwrap.dedent("""
    import sys
    from jaxnet import checkpoint
    held = None
    print("ready", flush=True)
    for line in sys.stdin:  # "lock PATH" or "unlock"
        command, _, path = line.rstrip("\\n").partition(" ")
        if command == "lock":
            held = checkpoint.lock(path)
            held.__enter__()
        else:
            held.__exit__(None, None, None)
        print("done", flush=True)
""")
_HOLDER: dict[str, Any] = {}  # one jaxnet process, started once, that takes locks on request


def _holder() -> subprocess.Popen:
    if "proc" not in _HOLDER:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout.readline().strip() == "ready"
        _HOLDER["proc"] = proc
    return _HOLDER["proc"]


@pytest.fixture(scope="module", autouse=True)
def _stop_holder():
    yield
    proc = _HOLDER.pop("proc", None)
    if proc is not None:
        proc.stdin.close()
        proc.wait(60)
        proc.stdout.close()
    if "dir" in _JAX_CACHE:
        shutil.rmtree(_JAX_CACHE.pop("dir"), ignore_errors=True)


def _tell(command: str) -> None:
    proc = _holder()
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def while_locked(call):
    """``call`` while another real jaxnet process holds the checkpoint folder's lock."""
    def run(ws):
        _tell(f"lock {ws / CK}")
        try:
            return call(ws)
        finally:
            _tell("unlock")
    return run


def holder_pid_in_message(call):
    def run(ws):
        try:
            call(ws)
        except Exception as e:
            assert f"process {_holder().pid} on this host" in str(e)
            raise
    return run


def gzip_bomb(ws):
    """Labels whose header says 10 items, followed by 1 GiB of zeros in 64 KiB of gzip."""
    zeros = gzip.compress(bytes(16 << 20))  # one 16 MiB member, repeated: a valid gzip file
    data = gzip.compress(idx_bytes(np.arange(10, dtype=np.uint8))) + zeros * 64
    (ws / "data" / "t10k-labels-idx1-ubyte.gz").write_bytes(data)


def bounded(call, seconds=5.0, peak_mb=64):
    def run(ws):
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            return call(ws)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert time.perf_counter() - t0 < seconds and peak < peak_mb << 20, (peak, seconds)
    return run


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def link_to_user_file(path: Path, ws: Path) -> None:
    path.unlink()
    path.symlink_to(ws / "user.json")


def replace_with_fifo(path_of: Callable[[Path], Path]):
    def setup(ws):
        path = path_of(ws)
        path.unlink()
        os.mkfifo(path)
    return setup


def header_only(name: str, dims: tuple[int, ...]):
    def setup(ws):
        header = (0x0800 + len(dims)).to_bytes(4, "big")
        header += b"".join(d.to_bytes(4, "big") for d in dims)
        (ws / "data" / name).write_bytes(gzip.compress(header + bytes(100)))
    return setup


def no_new_folder(name):
    def check(ws, result):
        assert not (ws / name).exists()
    return check


def load_with_notes(split, folder):
    notes: list[str] = []
    return datasets.load_mnist(split, folder, log=notes.append), notes


def offline(call):
    def run(ws):
        def no_network(*args, **kwargs):
            raise OSError("network is unreachable (test)")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(datasets.urllib.request, "urlopen", no_network)
            return call(ws)
    return run


def resume_after(setup_damage):
    """Save step 2, damage it; resume_state must fall back to step 1 and move 2 aside."""
    def setup(ws):
        checkpoint.save(CK, STATE, step=2, metadata={"epoch": 2, "history": [{}, {}]})
        setup_damage(ws)
    return setup


def fell_back(ws, result):
    state, epoch, history, config = result
    same_state(ws, state)
    assert epoch == 1 and checkpoint.all_steps(CK) == [1]
    aside = [p for p in os.listdir(ws / CK) if p.startswith("corrupt-step_00000002-")]
    assert len(aside) == 1 and (ws / CK / aside[0] / "manifest.json").exists()


def resume(ws):
    return checkpoint.resume_state(CK, STATE, log=lambda line: None)


def step2_manifest(edit):
    def damage(ws):
        path = manifest_path(ws, 2)
        new = edit(json.loads(path.read_text()))
        path.write_text(new if isinstance(new, str) else json.dumps(new))
    return damage


FIT_ENTRY = {"run": 0, "train_loss": 0.5, "train_seconds": 0.25, "seconds": 0.5}


def fit_steps(damage):
    """Steps 1 and 2 with fit's metadata; step 2's damaged by ``damage(metadata)``."""
    def setup(ws):
        history = [{"epoch": 1, **FIT_ENTRY}, {"epoch": 2, **FIT_ENTRY}]
        edit_manifest(lambda m: {**m, "metadata": {"epoch": 1, "history": history[:1]}})(ws)
        checkpoint.save(CK, STATE, step=2, metadata={"epoch": 2, "history": history})
        step2_manifest(lambda m: (damage(m["metadata"]), m)[1])(ws)
    return setup


def fit_resume(ws):
    from jaxnet.checkpoint._runs import resume

    state, epoch, history = resume(CK, STATE, None, lambda line: None)
    return state, epoch, history, None


def concurrent_prune(ws):
    """A pruner in another process removes the checkpoint while it is being read."""
    original = _fs.read_bounded

    def pruned_meanwhile(path, cap):
        data = original(path, cap)
        if path.name == "manifest.json":  # its manifest read, the checkpoint goes
            shutil.rmtree(path.parent)
        return data

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_fs, "read_bounded", pruned_meanwhile)
        return restore(ws)


def name_too_long(ws):
    return checkpoint.save("x" * 300, STATE, step=1)


def on_tmpfs_full(args_of: Callable[[Path], list[str]], fill: bool = False):
    """The command with a path on a full (or tiny) disk; injected ENOSPC where no tmpfs."""
    def run(ws):
        with mounted_tmpfs(ws / "disk", "64k") as real, pytest.MonkeyPatch.context() as mp:
            if fill and real:
                with contextlib.suppress(OSError), open(ws / "disk" / "filler", "wb") as f:
                    f.write(bytes(1 << 20))
            elif fill:  # no tmpfs: ENOSPC injected at the write of the output
                write_atomic = _fs.write_atomic

                def full(tmp):
                    tmp.write_bytes(b"{")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                mp.setattr(_fs, "write_atomic", lambda target, write, *, overwrite:
                           write_atomic(target, full, overwrite=overwrite))
            elif not real:
                _enospc_at_orbax(mp)
            try:
                return cli_run(*args_of(ws))(ws)
            finally:
                leftovers = [p for p in os.listdir(ws / "disk") if p != "filler"]
                assert leftovers in ([], ["ck"]), leftovers
                if leftovers:
                    assert os.listdir(ws / "disk" / "ck") == []
    return run


def no_matplotlib(call):
    def run(ws):
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
            return call(ws)
    return run


def out_of_memory(call):
    """XLA failing to allocate (as a device that is too small does) during training."""
    def run(ws):
        from jaxnet import mnist

        def train_mnist(*args, **kwargs):
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                               "1.20GiB.\nBufferAssignment OOM Debugging.")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(mnist, "train_mnist", train_mnist)
            return call(ws)
    return run


def convert_run(*args: str):
    """``jaxnet convert`` in this process, checked like ``cli_run``."""
    def call(ws):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(["convert", *args])
            except SystemExit as e:
                code = e.code
        stderr = err.getvalue()
        assert "Traceback" not in stderr
        if code:
            lines = stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("jaxnet: error: "), stderr
            raise CliFailed(f"exit {code}: {stderr.strip()}")
        return out.getvalue()
    return call


def start_safetensors(ws):
    from jaxnet import interop, mnist

    interop.save(ws / "start.safetensors", mnist.build_model(mnist.MnistConfig(hidden=(8,))))


def unreadable(folder: str, call):
    """``folder`` made mode 000 (and, as root, which ignores modes, reported so by os.access)."""
    def run(ws):
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if os.path.realpath(path) == os.path.realpath(ws / folder):
                return False
            return real_access(path, mode, *args, **kwargs)

        os.chmod(ws / folder, 0)
        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(os, "access", access)
                return call(ws)
        finally:
            os.chmod(ws / folder, 0o755)
    return run


def users_cache_folder(ws: Path) -> None:
    """A folder of the user's holding files that merely end in -cache, and one of JAX's
    entries that no record vouches for (the only file that may go)."""
    (ws / "mine").mkdir()
    (ws / "mine" / "project-cache").write_text("the user's notes")
    (ws / "mine" / "notes.txt").write_text("x")
    os.symlink("notes.txt", ws / "mine" / "link-cache")
    (ws / "mine" / "sub-cache").mkdir()
    (ws / "mine" / ("jit_step-" + "0" * 64 + "-cache")).write_bytes(b"unverified")


def no_download(call):
    """``call`` with jaxnet's MNIST download made a test failure (it must never be tried)."""
    def run(ws):
        def download(directory, names):
            raise AssertionError(f"tried to download {names} into {directory}")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(datasets, "_download", download)
            return call(ws)
    return run


def own_data_dir(ws: Path, call):
    """``call()`` with jaxnet's own data folder (``$JAXNET_DATA_DIR``) set to ``ws/data``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXNET_DATA_DIR", str(ws / "data"))
        return call()


def no_write_access(folder: str, call):
    """A read-only ``folder``; as root (which ignores modes) creating a file in it is denied
    at ``os.open``, as the kernel would deny it."""
    def run(ws):
        (ws / folder).mkdir()
        os.chmod(ws / folder, 0o555)
        real_open = os.open

        def denied(path, flags, *args, **kwargs):
            if os.path.realpath(os.path.dirname(os.path.abspath(path))) == \
                    os.path.realpath(ws / folder) and flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return real_open(path, flags, *args, **kwargs)

        try:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(os, "open", denied)
                return call(ws)
        finally:
            os.chmod(ws / folder, 0o755)
    return run


def stdout_has(*parts):
    def check(ws, stdout):
        for part in parts:
            assert part in stdout, stdout
    return check


# --------------------------------------------------------------------------- the table

CASES = [
    # ---- paths: relative, ~, spaces, non-ASCII, "..", as given in messages
    Case("path-relative", lambda ws: (checkpoint.save("rel", STATE, step=3),
                                      checkpoint.restore("rel", like=STATE)),
         check=lambda ws, r: ok(same(r[1]), checkpoint.all_steps(ws / "rel") == [3])),
    Case("path-dotdot", lambda ws: (os.makedirs("sub", exist_ok=True), os.chdir("sub"),
                                    checkpoint.save("../up", STATE, step=1),
                                    checkpoint.restore("../up", like=STATE))[-1],
         check=same_state),
    Case("path-tilde", lambda ws: (checkpoint.save("~/ck", STATE, step=1),
                                   checkpoint.restore("~/ck", like=STATE))[-1],
         check=lambda ws, r: ok(same(r), (ws / "home" / "ck" / "step_00000001").is_dir())),
    Case("path-spaces-unicode", lambda ws: (checkpoint.save("my runs/ünï ✓", STATE, step=1),
                                            checkpoint.restore("my runs/ünï ✓", like=STATE))[-1],
         check=same_state),
    Case("path-resume-relative", lambda ws: checkpoint.resume_state(CK, STATE, log=print),
         check=lambda ws, r: ok(same(r[0]), r[1] == 1)),
    Case("path-error-shows-given", lambda ws: checkpoint.restore("no such/dir", like=STATE),
         checkpoint.CheckpointNotFoundError, r"^no complete checkpoint in no such/dir$"),
    Case("path-data-relative-tilde", lambda ws: (
        os.environ.__setitem__("HOME", str(ws)), datasets.load_mnist("test", "~/data",
                                                                     log=lambda s: None)),
         check=lambda ws, r: ok(r[1][0].shape == (64, 28, 28))),
    Case("cli-relative-paths-outputs-note-and-resume", lambda ws: (
        shutil.copytree("data", "my data ü"),
        cli_run(*TINY, "--data-dir", "my data ü", "--checkpoint-dir", "../" + ws.name + "/cks ü",
                "--json", "out ü.json", "--plot", "~/c.svg")(ws),
        cli_run(*TINY, "--data-dir", "my data ü", "--checkpoint-dir", "cks ü", "--resume",
                "--json", "again.json")(ws)),
         check=lambda ws, outs: (
             stdout_has("jaxnet: note: my data ü holds IDX files other than the official MNIST",
                        "epoch 1/1", "test accuracy:", "wrote out ü.json", "wrote ~/c.svg")(
                 ws, outs[1]),
             stdout_has("resume: continuing from cks ü/step_00000001 (epoch 1)",
                        "wrote again.json")(ws, outs[2]),
             ok(json.loads((ws / "out ü.json").read_text())["config"]["val_split"] == 64,
                (ws / "home" / "c.svg").read_bytes().startswith(b"<?xml"),
                not [p for p in os.listdir(ws) if p.startswith(".jaxnet-out-")]))),

    # ---- checkpoints: the manifest is validated (size- and depth-capped, every key and type)
    Case("manifest-missing-key", restore, checkpoint.CheckpointCorruptError,
         r"manifest.json is malformed: missing keys \['leaves'\]",
         setup=edit_manifest(lambda m: {k: v for k, v in m.items() if k != "leaves"}),
         may_change=(STEP1,)),
    Case("manifest-null", restore, checkpoint.CheckpointCorruptError,
         "the manifest must be dict, got null", setup=edit_manifest(lambda m: "null"),
         may_change=(STEP1,)),
    Case("manifest-list-for-dict", restore, checkpoint.CheckpointCorruptError,
         "'files' must be dict, got list", setup=edit_manifest(lambda m: {**m, "files": []}),
         may_change=(STEP1,)),
    Case("manifest-leaf-null", restore, checkpoint.CheckpointCorruptError,
         r"leaves\[0\] must be dict, got null",
         setup=edit_manifest(lambda m: {**m, "leaves": [None, *m["leaves"][1:]]}),
         may_change=(STEP1,)),
    Case("manifest-shape-string", restore, checkpoint.CheckpointCorruptError,
         r"leaves\[1\].shape must be list, got str",
         setup=edit_manifest(lambda m: {**m, "leaves": [m["leaves"][0],
                                                        {**m["leaves"][1], "shape": "4x3"}]}),
         may_change=(STEP1,)),
    Case("manifest-step-bool", restore, checkpoint.CheckpointCorruptError,
         "'step' must be int, got bool", setup=edit_manifest(lambda m: {**m, "step": True}),
         may_change=(STEP1,)),
    Case("manifest-other-step", restore, checkpoint.CheckpointCorruptError,
         "'step' is 7, but the folder is step 1", setup=edit_manifest(lambda m: {**m, "step": 7}),
         may_change=(STEP1,)),
    Case("manifest-unexpected-key", restore, checkpoint.CheckpointCorruptError,
         r"unexpected keys \['pickle'\]", setup=edit_manifest(lambda m: {**m, "pickle": "x"}),
         may_change=(STEP1,)),
    Case("manifest-path-traversal", restore, checkpoint.CheckpointCorruptError,
         "'files' names an invalid path '../../user.json'",
         setup=edit_manifest(lambda m: {**m, "files": {"../../user.json": {
             "size": 1, "sha256": "0" * 64}}}), may_change=(STEP1,)),
    Case("manifest-deep-nesting", restore, checkpoint.CheckpointCorruptError,
         r"unreadable manifest.json \(RecursionError\)|nested deeper than 64",
         setup=edit_manifest(lambda m: json.dumps(m)[:-1] + ', "deep": ' + "[" * 100_000
                             + "]" * 100_000 + "}"), may_change=(STEP1,)),
    Case("manifest-nesting-over-cap", restore, checkpoint.CheckpointCorruptError,
         "nested deeper than 64 levels",
         setup=edit_manifest(lambda m: {**m, "metadata": {"x": json.loads("[" * 100 + "]" * 100)}}),
         may_change=(STEP1,)),
    Case("manifest-huge", bounded(restore, seconds=2, peak_mb=8),
         checkpoint.CheckpointCorruptError, r"unreadable manifest.json \(67108865 bytes, more "
                                            r"than the 67108864 allowed\)",
         setup=lambda ws: os.truncate(manifest_path(ws), (64 << 20) + 1), may_change=(STEP1,)),
    Case("manifest-fifo-is-not-listed", bounded(restore),
         checkpoint.CheckpointNotFoundError, "no complete checkpoint in ck",
         setup=replace_with_fifo(manifest_path), may_change=(STEP1,)),
    # ---- array files: regular files of the recorded size, checked before anything opens them
    Case("array-fifo-never-hangs", bounded(restore), checkpoint.CheckpointCorruptError,
         r"file arrays/.* is not a regular file \(a link, FIFO or device\); refusing to open it",
         setup=replace_with_fifo(array_file), may_change=(STEP1,)),
    Case("array-symlink-to-user-file", restore, checkpoint.CheckpointCorruptError,
         "is not a regular file", setup=lambda ws: link_to_user_file(array_file(ws), ws),
         may_change=(STEP1,)),
    Case("array-grown", restore, checkpoint.CheckpointCorruptError,
         r"is corrupt \(truncated or changed: \d+ bytes, expected \d+\)",
         setup=lambda ws: append(array_file(ws), b"extra"), may_change=(STEP1,)),
    Case("restore-while-pruned", concurrent_prune, checkpoint.CheckpointNotFoundError,
         "step_00000001 was removed while being read", may_change=(STEP1,)),
    # ---- resume: any problem with the newest is a CheckpointCorruptError -> documented fallback
    Case("resume-falls-back-manifest-list", resume, check=fell_back,
         setup=resume_after(step2_manifest(lambda m: [m])),
         may_change=(ST2,)),
    Case("resume-falls-back-history-wrong-type", resume, check=fell_back,
         setup=resume_after(step2_manifest(
             lambda m: {**m, "metadata": {**m["metadata"], "history": "lots"}})),
         may_change=(ST2,)),
    Case("resume-falls-back-epoch-null", resume, check=fell_back,
         setup=resume_after(step2_manifest(
             lambda m: {**m, "metadata": {**m["metadata"], "epoch": None}})),
         may_change=(ST2,)),
    Case("resume-falls-back-fifo", bounded(resume), check=fell_back,
         setup=resume_after(replace_with_fifo(lambda ws: array_file(ws, 2))),
         may_change=(ST2,)),
    # fit's resume: metadata that passes the schema but not fit (more: test_checkpoint_metadata)
    Case("fit-resume-falls-back-history-run-str", fit_resume, check=fell_back,
         setup=fit_steps(lambda m: m["history"][0].__setitem__("run", "x")),
         may_change=(STEP1, ST2)),
    Case("fit-resume-falls-back-epoch-not-step", fit_resume, check=fell_back,
         setup=fit_steps(lambda m: m.__setitem__("epoch", 99)), may_change=(STEP1, ST2)),
    Case("save-restore-zero-size-array", lambda ws: (
        checkpoint.save(CK, {**STATE, "e": np.zeros((0, 3), np.float32)}, step=2),
        checkpoint.restore(CK, like={**STATE, "e": np.zeros((0, 3), np.float32)}, step=2))[1],
         check=lambda ws, r: ok(same(r), r["e"].shape == (0, 3))),

    # ---- jaxnet deletes only what it created
    Case("user-lookalike-folders-survive-save-and-prune",
         lambda ws: [checkpoint.save(CK, STATE, step=s, keep=1) for s in (2, 3)],
         check=lambda ws, r: ok(checkpoint.all_steps(CK) == [3],
                                all((ws / CK / n).is_dir() for n in USER_LOOKALIKES)),
         may_change=(STEP1,)),
    Case("huge-numbers-in-names", lambda ws: (
        (ws / CK / ".tmp-x-99999999999999999999999999999").mkdir(),
        (ws / CK / "step_99999999999999999999").mkdir(),
        checkpoint.save(CK, STATE, step=2), checkpoint.all_steps(CK))[-1],
         check=lambda ws, steps: ok(steps == [1, 2])),
    Case("step-names-only-in-jaxnet-spelling", lambda ws: (
        (ws / CK / "step_1").mkdir(), (ws / CK / "step_000000000000000001").mkdir(),
        shutil.copy(manifest_path(ws), ws / CK / "step_1"), checkpoint.all_steps(CK))[-1],
         check=lambda ws, steps: ok(steps == [1])),
    Case("save-step-too-large", lambda ws: checkpoint.save(CK, STATE, step=10**30),
         ValueError, r"^step: expected an int below 10\*\*18, got 10{30}$"),
    Case("abandoned-jaxnet-work-folder-removed", lambda ws: (
        (ws / CK / (".jaxnet-tmp-" + "ab" * 16)).mkdir(),
        (ws / CK / (".jaxnet-tmp-" + "ab" * 16) / "jaxnet-owner.json").write_text(
            jaxnet_lock_record(token="ab" * 16, pid=dead_pid())),
        checkpoint.save(CK, STATE, step=2))[-1],
         check=lambda ws, r: ok(not (ws / CK / (".jaxnet-tmp-" + "ab" * 16)).exists())),
    Case("marker-with-huge-pid", lambda ws: (
        (ws / CK / (".jaxnet-tmp-" + "cd" * 16)).mkdir(),
        (ws / CK / (".jaxnet-tmp-" + "cd" * 16) / "jaxnet-owner.json").write_text(
            jaxnet_lock_record(token="cd" * 16, pid=10**30)),
        checkpoint.save(CK, STATE, step=2))[-1],
         check=lambda ws, r: ok(checkpoint.all_steps(CK) == [1, 2])),

    # ---- the lock: one writer; stale locks recovered; another host's never taken
    Case("lock-second-writer-fails-at-once",
         while_locked(holder_pid_in_message(save2)), checkpoint.CheckpointLockedError,
         r"^checkpoint_dir: ck is in use by another jaxnet run \(process \d+ on this host, "
         r"since .*\); wait for it to end or use another folder$"),
    Case("lock-resume-while-another-writes", while_locked(resume),
         checkpoint.CheckpointLockedError, "ck is in use by another jaxnet run"),
    Case("lock-stale-from-dead-process", lambda ws: (
        (ws / CK / ".jaxnet-lock").write_text(jaxnet_lock_record(pid=dead_pid())),
        save2(ws)),
         check=lambda ws, r: ok(checkpoint.all_steps(CK) == [2],
                                not (ws / CK / ".jaxnet-lock").exists()), may_change=(STEP1,)),
    Case("lock-other-host-never-stolen", lambda ws: (
        (ws / CK / ".jaxnet-lock").write_text(jaxnet_lock_record(host="gpu-node-7", pid=42)),
        save2(ws)), checkpoint.CheckpointLockedError,
         r"locked by process 42 on host gpu-node-7, since earlier; jaxnet cannot tell .* if it "
         r"has ended, delete ck/.jaxnet-lock$"),
    Case("lock-unreadable-old", lambda ws: (
        (ws / CK / ".jaxnet-lock").write_bytes(b"\x00garbage"),
        os.utime(ws / CK / ".jaxnet-lock", (0, 0)), save2(ws)),
         checkpoint.CheckpointLockedError, "unreadable lock file ck/.jaxnet-lock; if no jaxnet "
                                           "run uses this folder, delete that file"),
    Case("lock-nested-with", lambda ws: _nested_lock(ws),
         check=lambda ws, r: ok(checkpoint.all_steps(CK) == [1, 2],
                                not (ws / CK / ".jaxnet-lock").exists())),
    Case("cli-second-writer-fails-at-once", while_locked(holder_pid_in_message(
        cli_run(*TINY, "--checkpoint-dir", CK, "--resume"))), CliFailed,
         r"^exit 2: jaxnet: error: --checkpoint-dir: ck is in use by another jaxnet run"),

    # ---- faults during writes: one line, earlier checkpoints intact, nothing half-written
    Case("save-disk-full", save_on_full_disk, checkpoint.CheckpointError,
         r"^checkpoint_dir: could not write disk/ck/step_00000002: No space left on device "
         r"\(ENOSPC\); earlier checkpoints are intact$"),
    Case("save-manifest-disk-full", checked(inject(
        "write_new", OSError(errno.ENOSPC, "No space left on device"),
        when=lambda path, data: path.name == "manifest.json")(save2), after_failed_save),
         checkpoint.CheckpointError, r"step_00000002: No space left on device \(ENOSPC\)"),
    Case("save-permission-denied", checked(inject(
        "write_new", PermissionError(errno.EACCES, "Permission denied"),
        when=lambda path, data: path.name == "jaxnet-owner.json")(save2),
        after_failed_save),
         checkpoint.CheckpointError, r"could not write ck/step_00000002: Permission denied "
                                     r"\(EACCES\); earlier checkpoints are intact"),
    Case("save-name-too-long", name_too_long, checkpoint.CheckpointError,
         r"^checkpoint_dir: could not write x{300}: File name too long \(ENAMETOOLONG\)$"),
    Case("check-name-too-long", lambda ws: checkpoint.check_new_run("y" * 300, resume=False),
         checkpoint.CheckpointError, r"y{300} is not a writable folder \(File name too long"),
    Case("cli-checkpoint-disk-full", on_tmpfs_full(lambda ws: [
        *TINY, "--checkpoint-dir", "disk/ck"]), CliFailed,
         r"^exit 1: jaxnet: error: checkpoint_dir: could not write disk/ck/step_00000001: No "
         r"space left on device \(ENOSPC\); earlier checkpoints are intact$"),
    Case("cli-json-disk-full", on_tmpfs_full(lambda ws: [*TINY, "--json", "disk/run.json"],
                                             fill=True), CliFailed,
         r"^exit 1: jaxnet: error: --json: could not write disk/run.json: No space left"),

    # ---- --json/--plot: checked before training, distinct, written atomically
    Case("cli-json-plot-same-file", cli_run(*TINY, "--json", "out", "--plot", "./out"),
         CliFailed, "^exit 2: jaxnet: error: --json and --plot: both name out; give them "
                    "different files$", check=no_new_folder("out")),
    Case("cli-json-is-a-folder", cli_run(*TINY, "--json", "data", "--overwrite"), CliFailed,
         "^exit 2: jaxnet: error: --json: data is a folder; expected a file path$"),
    Case("cli-json-in-a-file", cli_run(*TINY, "--json", "user.json/run.json"), CliFailed,
         "^exit 2: jaxnet: error: --json: cannot write user.json/run.json: user.json is not a "
         "writable folder"),
    Case("cli-plot-without-matplotlib", no_matplotlib(cli_run(*TINY, "--plot", "c.png")),
         CliFailed, "^exit 2: jaxnet: error: --plot: needs matplotlib, which cannot be imported"),
    Case("cli-plot-unknown-format", cli_run(*TINY, "--plot", "curves.xyz"), CliFailed,
         r"^exit 2: jaxnet: error: --plot: cannot save a .xyz image; expected one of .*\.png"),

    # ---- flags: no abbreviations, the command's own usage, seeds and batch sizes that fit
    Case("cli-abbreviation", cli_run("--epoch", "2"), CliFailed,
         r"^exit 2: usage: jaxnet train mnist .*jaxnet train mnist: error: unrecognized "
         r"arguments: --epoch 2$"),
    Case("cli-seed-2-64", cli_run("--seed", str(2**64)), CliFailed,
         r"^exit 2: usage: jaxnet train mnist .*argument --seed: expected an int in "
         r"\[0, 4294967295\] .*got '18446744073709551616'$"),
    Case("cli-batch-larger-than-data", cli_run(*TINY, "--batch-size", "1000"), CliFailed,
         r"^exit 2: jaxnet: error: --batch-size: expected at most the 192 training images "
         r"\(256 minus --val-split 64\), got 1000$"),
    Case("cli-val-split-too-big", cli_run(*TINY, "--val-split", "256"), CliFailed,
         r"^exit 2: jaxnet: error: --val-split: expected fewer than the 256 training images, "
         r"got 256$"),
    Case("cli-device-out-of-memory", out_of_memory(cli_run(*TINY)), CliFailed,
         r"^exit 1: jaxnet: error: out of memory on .*: Out of memory while trying to allocate "
         r"1.20GiB; choose a smaller --batch-size or --hidden$"),
    Case("cli-model-too-big", cli_run(*TINY, "--hidden", "4000000,4000000"), CliFailed,
         r"^exit 2: jaxnet: error: --hidden: training needs about \d+\.\d GB, more than the "
         r"\d+\.\d GB of memory free here \(a 784-4000000-4000000-10 MLP's parameters, "
         r"gradients and adam state .*choose smaller layers$"),

    # ---- issue 18: the pre-checks cover what training will do (paths, sizes, settings)
    Case("cli-epochs-10-30", cli_run(*TINY, "--epochs", str(10**30)), CliFailed,
         r"^exit 2: usage: jaxnet train mnist .*argument --epochs: expected an int in "
         r"\[1, 2147483647\] \(the step counter is int32\), got "
         r"'1000000000000000000000000000000'$"),
    Case("cli-init-timeout-10-30", cli_run(*TINY, "--init-timeout", str(10**30)), CliFailed,
         r"^exit 2: usage: jaxnet train mnist .*argument --init-timeout: expected seconds in "
         r"\[1, 86400\] \(one day\), got '1000000000000000000000000000000'$"),
    Case("cli-batch-size-10-30", cli_run(*TINY, "--batch-size", str(10**30)), CliFailed,
         r"^exit 2: usage: jaxnet train mnist .*argument --batch-size: expected an int in "
         r"\[1, 2147483647\], got '1000000000000000000000000000000'$"),
    Case("cli-hidden-10-30", cli_run(*TINY, "--hidden", f"16,{10**30}"), CliFailed,
         r"^exit 2: usage: jaxnet train mnist .*argument --hidden: expected layer sizes in "
         r"\[1, 2147483647\], got '16,1000000000000000000000000000000'$"),
    Case("cli-hidden-thousands-of-layers", cli_run(*TINY, "--hidden", ",".join(["4"] * 5000)),
         CliFailed, r"^exit 2: usage: jaxnet train mnist .*argument --hidden: expected at most "
                    r"100 hidden layers, got 5000$"),
    Case("cli-momentum-with-adam", cli_run(*TINY, "--momentum", "0.9"), CliFailed,
         r"^exit 2: jaxnet: error: --momentum: expected 0 with --optimizer adam \(Adam has no "
         r"momentum term\), got 0.9; pass --optimizer sgd to train with momentum$"),
    Case("cli-warmup-cosine-one-step", cli_run(*TINY, "--batch-size", "192"), CliFailed,
         r"^exit 2: jaxnet: error: --schedule warmup_cosine: expected at least 2 optimizer steps "
         r"\(a warm-up, then a decay\), got 1 \(--epochs 1 x 1 batch of --batch-size 192 "
         r"over 192 training images\); pass --schedule constant, more --epochs or a smaller "
         r"--batch-size$"),
    Case("cli-json-is-the-checkpoint-dir", cli_run(*TINY, "--json", "run", "--checkpoint-dir",
                                                   "run"), CliFailed,
         r"^exit 2: jaxnet: error: --json: run is the --checkpoint-dir folder \(or holds "
         r"it\); give them different paths$", check=no_new_folder("run")),
    Case("cli-json-holds-the-checkpoint-dir", cli_run(*TINY, "--json", "runs", "--checkpoint-dir",
                                                      "runs/a/ck"), CliFailed,
         r"^exit 2: jaxnet: error: --json: runs is the --checkpoint-dir folder \(or holds "
         r"it\); give them different paths$", check=no_new_folder("runs")),
    Case("cli-plot-is-the-checkpoint-dir", cli_run(*TINY, "--plot", "c.png", "--checkpoint-dir",
                                                   "./c.png"), CliFailed,
         r"^exit 2: jaxnet: error: --plot: c.png is the --checkpoint-dir folder \(or holds "
         r"it\); give them different paths$", check=no_new_folder("c.png")),
    Case("cli-checkpoint-dir-not-utf8", cli_run(*TINY, "--checkpoint-dir", "ck\udcff"),
         CliFailed, r"^exit 2: jaxnet: error: --checkpoint-dir: expected a path in UTF-8 \(the "
                    r"checkpoint writer accepts no other bytes\), got 'ck\\udcff'; choose "
                    r"another folder name$",
         check=lambda ws, r: ok(not any(n.startswith(b"ck") and n != CK.encode()
                                        for n in os.listdir(os.fsencode(ws))))),
    Case("cli-data-dir-unreadable", unreadable("data", cli_run(*TINY)), CliFailed,
         r"^exit 2: jaxnet: error: --data-dir: data is not readable \(permission denied\); "
         r"give read access to it or choose another --data-dir$"),
    # issue 18: a mode-000 folder was "missing" (its files looked absent) and downloaded into
    Case("mnist-data-dir-unreadable", unreadable("data", no_download(
        lambda ws: datasets.load_mnist("train", ws / "data"))), PermissionError,
         r"^data_dir: .*data exists but cannot be read \(permission denied\); give read access "
         r"to it \(chmod u\+rx .*data\) or choose another folder$"),
    Case("mnist-own-folder-unreadable", unreadable("data", no_download(
        lambda ws: own_data_dir(ws, lambda: datasets.load_mnist("test")))), PermissionError,
         r"^JAXNET_DATA_DIR: .*data exists but cannot be read \(permission denied\)"),
    Case("load-idx-unreadable", unreadable("data", lambda ws: datasets.load_idx(ws / "data")),
         PermissionError, r"^directory: .*data exists but cannot be read"),
    # round 4's compile cache in a folder the user names (JAXNET_COMPILATION_CACHE=mine)
    Case("cache-keeps-the-users-files-named-cache", lambda ws: _compile_cache._prepare(
        ws / "mine", 1 << 30), None, setup=users_cache_folder,
         check=lambda ws, r: ok(sorted(os.listdir(ws / "mine")) == sorted(
             ["project-cache", "link-cache", "notes.txt", "sub-cache"]), r == set()),
         may_change=("mine/jit_", "mine/" + _compile_cache.MANIFEST)),
    Case("cache-folder-not-utf8-env", lambda ws: _compile_cache.resolve(
        environ={"JAXNET_COMPILATION_CACHE": os.fsdecode(b"cc\xff")}), ValueError,
         r"^JAXNET_COMPILATION_CACHE: expected a path in UTF-8 \(XLA's compilation cache "
         r"accepts no other bytes\), got 'cc\\udcff'; choose another folder name$"),
    Case("cli-compile-cache-not-utf8", cli_run(*TINY, "--compile-cache", "cc\udcff"),
         CliFailed, r"^exit 2: jaxnet: error: --compile-cache: expected a path in UTF-8"),
    Case("cli-convert-to-npz", convert_run("start.safetensors", "--to", "out.npz", "--hidden",
                                           "8"), CliFailed,
         r"^exit 2: jaxnet: error: --to: expected a checkpoint folder or a \.safetensors, \.pt, "
         r"\.pth or \.bin file, got out.npz \(a \.npz file\)", setup=start_safetensors,
         check=no_new_folder("out.npz")),
    Case("cli-convert-into-unwritable-folder", no_write_access(
        "locked", convert_run("start.safetensors", "--to", "locked/out.safetensors", "--hidden",
                              "8")), CliFailed,
         r"^exit 2: jaxnet: error: --to: cannot write locked/out.safetensors: locked is not a "
         r"writable folder \(Permission denied\)$", setup=start_safetensors),
    Case("cli-convert-checkpoint-into-unwritable-folder", no_write_access(
        "locked", convert_run("start.safetensors", "--to", "locked/ck", "--hidden", "8")),
         CliFailed,
         r"^exit 2: jaxnet: error: --to: cannot write locked/ck: locked is not a writable "
         r"folder \(Permission denied\)$", setup=start_safetensors),

    # ---- data: bounded reading, any MNIST-layout folder, nothing created under --data-dir
    Case("gzip-bomb-trailing", bounded(lambda ws: datasets.load_mnist("test", "data")),
         ValueError, r"t10k-labels-idx1-ubyte.gz: more data than the 10 bytes its header "
                     r"declares", setup=gzip_bomb, may_change=("data/",)),
    Case("gzip-header-declares-terabytes", bounded(lambda ws: datasets.load_idx("data", "test")),
         ValueError, r"declares dimensions \(1048576, 1048576, 1\), 1099511627776 bytes: more "
                     r"than the \d+ jaxnet reads",
         setup=header_only("t10k-images-idx3-ubyte.gz", (2**20, 2**20, 1)),
         may_change=("data/",)),
    Case("gzip-header-larger-than-possible", bounded(lambda ws: datasets.load_idx("data", "test")),
         ValueError, r"declares 47040000 bytes .* more than its \d+ compressed bytes can hold",
         setup=header_only("t10k-images-idx3-ubyte.gz", (60000, 28, 28)),
         may_change=("data/",)),
    Case("data-fifo", bounded(lambda ws: datasets.load_mnist("test", "data")), ValueError,
         r"^data/t10k-images-idx3-ubyte.gz: not a regular file",
         setup=replace_with_fifo(lambda ws: ws / "data" / "t10k-images-idx3-ubyte.gz"),
         may_change=("data/",)),
    Case("data-dir-missing-not-created", lambda ws: datasets.load_mnist("test", "nope/mnist"),
         FileNotFoundError, "^data_dir: nope/mnist does not exist", check=no_new_folder("nope")),
    Case("data-not-mnist-gives-a-note", lambda ws: load_with_notes("train", "data"),
         check=lambda ws, r: ok(r[0][0].shape == (256, 28, 28), len(r[1]) == 1,
                                r[1][0].startswith("note: data holds IDX files other than the "
                                                   "official MNIST ones"))),
    Case("data-wrong-image-size", lambda ws: (write_dataset(ws / "big", size=32),
                                              datasets.load_mnist("test", "big")),
         ValueError, "^big: holds 32x32 images; MNIST's layout has 28x28"),
    Case("data-label-out-of-range", lambda ws: (write_dataset(ws / "many", top_label=40),
                                                datasets.load_mnist("test", "many")),
         ValueError, "^many: holds label 40; MNIST's layout has the 10 classes 0-9"),
    Case("data-missing-files-offline-creates-nothing", offline(lambda ws: (
        (ws / "half").mkdir(), shutil.copy(ws / "data" / "train-images-idx3-ubyte.gz",
                                           ws / "half"), datasets.load_mnist("train", "half"))),
         FileNotFoundError, r"train-labels-idx1-ubyte.gz were not found in half",
         check=lambda ws, r: ok(os.listdir(ws / "half") == ["train-images-idx3-ubyte.gz"])),
    Case("cli-data-dir-missing", cli_run(*TINY, "--data-dir", "nowhere"), CliFailed,
         "^exit 2: jaxnet: error: --data-dir: nowhere does not exist", check=no_new_folder(
             "nowhere")),
]


def _nested_lock(ws):
    with checkpoint.lock(CK):
        with checkpoint.lock(CK):
            checkpoint.save(CK, STATE, step=2)
        assert (ws / CK / ".jaxnet-lock").exists()


# --------------------------------------------------------------------------- signals (subprocesses)

SAVE_SIGNALLER = textwrap.dedent("""
    import os, signal, sys
    from jaxnet import _fs, cli
    signals = [getattr(signal, s) for s in sys.argv[1].split(",")]
    original = _fs.write_new

    def write_new(path, data):  # inside a save, before its commit: signal ourselves
        if path.name == "manifest.json":
            for s in signals:
                os.kill(os.getpid(), s)
        return original(path, data)

    _fs.write_new = write_new
    sys.exit(cli.main(sys.argv[2:]))
""")


_JAX_CACHE: dict[str, str] = {}


def _spawn(ws: Path, *argv: str) -> subprocess.Popen:
    """``python *argv`` in ``ws``. The subprocesses share a JAX compilation cache: they
    compile the same small programs, and a cached executable computes the same bits."""
    if "dir" not in _JAX_CACHE:
        import tempfile

        _JAX_CACHE["dir"] = tempfile.mkdtemp(prefix="jaxnet-test-jax-cache-")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "JAX_COMPILATION_CACHE_DIR": _JAX_CACHE["dir"],
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return subprocess.Popen([sys.executable, *argv], cwd=ws, text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _signal_when(proc: subprocess.Popen, marker: str, signum: int, timeout=120) -> str:
    """Read stdout until a line starting with ``marker``, then send ``signum``."""
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker):
            proc.send_signal(signum)
            break
        assert time.monotonic() < deadline
    return "".join(seen) + proc.stdout.read()


SIGNAL_CASES = [
    # (id, extra CLI args, send on the line starting with, signal, expected exit)
    ("sigint-at-start-up", [], "jaxnet: MNIST MLP", signal.SIGINT, 130),
    ("sigterm-at-start-up", [], "jaxnet: MNIST MLP", signal.SIGTERM, 143),
    ("sigint-during-training", ["--epochs", "100000"], "epoch 2/", signal.SIGINT, 130),
]


@pytest.mark.parametrize("name,extra,marker,signum,code", SIGNAL_CASES,
                         ids=[c[0] for c in SIGNAL_CASES])
def test_signal_ends_with_one_line(ws, name, extra, marker, signum, code):
    before = snapshot(ws)
    with _spawn(ws, "-m", "jaxnet", "train", "mnist", *TINY, *extra) as proc:
        _signal_when(proc, marker, signum)
        stderr = proc.stderr.read()
    assert proc.returncode == code, stderr
    word = "interrupted (SIGINT)" if signum == signal.SIGINT else "terminated (SIGTERM)"
    assert stderr.strip().splitlines() == [f"jaxnet: {word}"], stderr
    assert snapshot(ws) == before


def test_second_run_on_a_folder_fails_at_once_and_sigterm_ends_the_first(ws):
    """Two processes, one --checkpoint-dir: the second fails at once naming the first; the
    first, sent SIGTERM mid-run (often mid-save), ends with one line and leaves only whole
    checkpoints, no lock and no work folder."""
    before = snapshot(ws)
    proc = _spawn(ws, "-m", "jaxnet", "train", "mnist", *TINY, "--epochs", "100000",
                  "--checkpoint-dir", "shared ck")
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 2/"):
            break
    with pytest.raises(CliFailed, match=rf"^exit 2: jaxnet: error: --checkpoint-dir: shared ck "
                                        rf"is in use by another jaxnet run \(process {proc.pid} "
                                        rf"on this host, since .*\); wait for it to end"):
        cli_run(*TINY, "--epochs", "100000", "--checkpoint-dir", "shared ck", "--resume")(ws)
    proc.send_signal(signal.SIGTERM)
    with proc:
        stdout = "".join(seen) + proc.stdout.read()
        stderr = proc.stderr.read()
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "jaxnet: terminated (SIGTERM); the checkpoints in shared ck are intact: add --resume "
        "to continue"], stdout
    steps = checkpoint.all_steps("shared ck")
    assert 2 <= len(steps) <= 4 and steps[-1] >= 2
    assert sorted(os.listdir(ws / "shared ck")) == [f"step_{s:08d}" for s in steps]
    for step in steps:
        checkpoint.load_metadata("shared ck", step)  # every listed checkpoint is whole
    after = snapshot(ws)
    assert {k: after.get(k) for k in before} == before


def _jaxnet(ws: Path, *args: str) -> str:
    """``jaxnet train mnist *args`` as a subprocess that must succeed; its stdout."""
    with _spawn(ws, "-m", "jaxnet", "train", "mnist", *args) as proc:
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and not stderr, stderr
    return stdout


@pytest.mark.parametrize("signals,code", [("SIGINT,SIGINT", 130), ("SIGTERM,SIGINT", 143)],
                         ids=["double-sigint-during-save", "sigterm-then-sigint-during-save"])
def test_signals_during_a_save_finish_it_and_resume_is_exact(ws, signals, code):
    (ws / "signaller.py").write_text(SAVE_SIGNALLER)
    before = snapshot(ws)
    proc = _spawn(ws, "signaller.py", signals, "train", "mnist", *TINY, "--epochs", "2",
                  "--checkpoint-dir", "run ck")
    with proc:
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == code, stderr
    word = "interrupted (SIGINT)" if code == 130 else "terminated (SIGTERM)"
    assert stderr.strip().splitlines() == [
        f"jaxnet: {word}; the checkpoints in run ck are intact: add --resume to continue"]
    # the save the signals hit was completed; nothing else is left behind
    assert checkpoint.all_steps("run ck") == [1]
    assert sorted(os.listdir(ws / "run ck")) == ["step_00000001"]
    if code == 130:  # (the checkpoint a SIGTERM leaves is the same: resumed once, here)
        resumed = _jaxnet(ws, *TINY, "--epochs", "2", "--checkpoint-dir", "run ck", "--resume",
                          "--json", "resumed.json")
        assert "resume: continuing from run ck/step_00000001 (epoch 1)" in resumed
        assert "over all 2 epochs" in resumed
        _jaxnet(ws, *TINY, "--epochs", "2", "--json", "straight.json")
        a, b = (json.loads((ws / f).read_text()) for f in ("straight.json", "resumed.json"))
        assert b["params_fingerprint"] == a["params_fingerprint"]
        assert b["test_accuracy"] == a["test_accuracy"]
        assert b["train_seconds"] < b["train_seconds_total"]
        assert b["train_seconds"] <= b["time_to_result_seconds"]
    after = snapshot(ws)
    assert {k: after.get(k) for k in before} == before


# --------------------------------------------------------------------------- the runner


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults-template")
    (root / "user.json").write_text('{"mine": true}')
    (root / "notes.txt").write_text("the user's notes\n")
    write_dataset(root / "data")
    checkpoint.save(root / CK, STATE, step=1, metadata={"epoch": 1, "history": [{}]})
    for name in USER_LOOKALIKES:
        (root / CK / name).mkdir()
        (root / CK / name / "keep.txt").write_text(f"the user's {name}")
    return root


@pytest.fixture
def ws(tmp_path, template, monkeypatch) -> Path:
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def alarm():
    """A hang (e.g. opening a FIFO) fails the case instead of blocking the suite."""
    def hung(signum, frame):
        raise TimeoutError("the case hung for 120 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_there_are_at_least_40_fault_cases():
    assert len(CASES) + len(SIGNAL_CASES) + 1 + 2 >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case, ws, alarm, capfd):
    if case.setup:
        case.setup(ws)
    before = snapshot(ws)
    if case.error is None:
        result = case.call(ws)
        if case.check:
            case.check(ws, result)
    else:
        with pytest.raises(case.error, match="(?s)" + case.match) as info:
            case.call(ws)
        message = str(info.value)
        if case.error is not CliFailed:
            assert "\n" not in message and "Traceback" not in message
        if case.check:
            case.check(ws, None)
    os.chdir(ws)
    out, err = capfd.readouterr()
    assert "Traceback" not in err and "absl" not in err, err[-3000:]
    after = snapshot(ws)
    changed = sorted(k for k, h in before.items()
                     if after.get(k) != h and not k.startswith(case.may_change))
    assert not changed, f"user files changed or deleted: {changed}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 folder (it ignores file "
                    "modes); the rows mnist-*-unreadable cover it with os.access reporting it")
def test_mnist_mode_000_folder_is_unreadable_not_missing(ws, monkeypatch):
    """As an ordinary user: a real mode-000 folder is named unreadable; nothing downloads."""
    monkeypatch.setattr(datasets, "_download", lambda d, names: pytest.fail(f"download {names}"))
    os.chmod(ws / "data", 0)
    try:
        with pytest.raises(PermissionError, match="data exists but cannot be read"):
            datasets.load_mnist("train", ws / "data")
    finally:
        os.chmod(ws / "data", 0o755)


def test_the_unreadable_folder_message_names_the_folder_and_the_fix():
    message = datasets._unreadable("data_dir", "runs/mnist")
    assert message == ("data_dir: runs/mnist exists but cannot be read (permission denied); "
                       "give read access to it (chmod u+rx runs/mnist) or choose another folder")
    assert "missing" not in message and "download" not in message
