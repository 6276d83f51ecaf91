"""Warm starts (issue 20, Deliver 1): JAX's persistent compilation cache, on by default.

The runs are real ``jaxnet train mnist --recipe course --epochs 1`` processes on a
small dataset in MNIST's layout. ``JAX_LOG_COMPILES=1`` makes JAX log every
persistent-cache hit with its key, so "the warm run loaded the cold run's
programs" is read from JAX itself, not from timings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_faults import write_dataset

from conftest import ROOT
from jaxnet import _compile_cache as cc

ENV = "JAXNET_COMPILATION_CACHE"
RUN = ["-m", "jaxnet", "train", "mnist", "--recipe", "course", "--epochs", "1", "--data-dir",
       "data", "--val-split", "64", "--no-progress"]
_HIT = re.compile(r"Persistent compilation cache hit for '[^']*' with key '([^']+)'")


@dataclasses.dataclass
class Run:
    proc: subprocess.CompletedProcess
    fingerprint: str | None
    accuracy: str | None
    hits: set[str]  # the entry files JAX loaded

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


def start(cwd: Path, cache: str | None, *flags: str, **env: str) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_LOG_COMPILES": "1", **env}
    full.pop(ENV, None)
    if cache is not None:
        full[ENV] = cache
    return subprocess.Popen([sys.executable, *RUN, *flags], cwd=cwd, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p: subprocess.Popen) -> Run:
    out, err = p.communicate(timeout=600)
    proc = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    fingerprint = re.search(r"params fingerprint ([0-9a-f]+)", out)
    accuracy = re.search(r"test accuracy: (\S+)", out)
    return Run(proc, fingerprint and fingerprint.group(1), accuracy and accuracy.group(1),
               {key + "-cache" for key in _HIT.findall(out + err)})


def train(cwd: Path, cache: str | None, *flags: str, **env: str) -> Run:
    run = finish(start(cwd, cache, *flags, **env))
    assert run.proc.returncode == 0, run.output[-3000:]
    assert "Traceback" not in run.output
    return run


def entries(folder: Path) -> dict[str, int]:
    """JAX's entry files and their mtimes."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name.endswith("-cache")}


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """One cold run: ``(work folder, cache folder, a copy of the cache, the run)``."""
    work = tmp_path_factory.mktemp("cache")
    write_dataset(work / "data", n_train=320, n_test=64)
    run = train(work, "xla")  # relative: resolved from the run's folder
    shutil.copytree(work / "xla", work / "template")
    return work, work / "xla", work / "template", run


def restore(folder: Path, template: Path) -> None:
    """The cold run's cache again, at the same path (JAX's keys include the folder)."""
    shutil.rmtree(folder)
    shutil.copytree(template, folder)


# --------------------------------------------------------------------------- cold, warm, off


def test_a_warm_run_loads_every_program_and_trains_bit_identically(cold):
    work, folder, template, first = cold
    assert first.hits == set()
    written = entries(folder)
    assert len(written) >= 5, sorted(written)  # the cold run filled the folder
    sealed = json.loads((folder / cc.MANIFEST).read_text())["entries"]
    assert set(sealed) == set(written)  # every entry recorded with its SHA-256
    warm = train(work, str(folder))
    assert warm.hits and warm.hits <= set(written)
    assert entries(folder) == written  # nothing compiled again: no entry new or rewritten
    off_folder = work / "never"
    off = train(work, str(off_folder), "--compile-cache", "off")  # the flag wins over the env
    assert off.hits == set() and not off_folder.exists()
    assert first.fingerprint and first.fingerprint == warm.fingerprint == off.fingerprint
    assert first.accuracy == warm.accuracy == off.accuracy


# --------------------------------------------------------------------------- damaged entries


def _damage_mixed(folder: Path) -> set[str]:
    """A quarter truncated, a quarter random bytes, a quarter another program's bytes."""
    names = sorted(entries(folder))
    rng = np.random.default_rng(0)
    data = {n: (folder / n).read_bytes() for n in names}
    swapped = names[2::4]
    for i, name in enumerate(names):
        path = folder / name
        if i % 4 == 0:
            path.write_bytes(data[name][: len(data[name]) // 2])
        elif i % 4 == 1:
            path.write_bytes(rng.bytes(len(data[name])))
        elif i % 4 == 2:  # the next swapped entry's program under this key (JAX alone crashes)
            path.write_bytes(data[swapped[(swapped.index(name) + 1) % len(swapped)]])
    return {n for i, n in enumerate(names) if i % 4 != 3}


def _damage_record(folder: Path) -> set[str]:
    (folder / cc.MANIFEST).write_bytes(b"\x00{not json")
    return set(entries(folder))


def _foreign_files(folder: Path) -> set[str]:
    """Files JAX never asks for: copies under other names, garbage, a folder, an unknown key."""
    for name in sorted(entries(folder))[:3]:
        shutil.copy(folder / name, folder / f"copy of {name}.bak")
    (folder / "notes.txt").write_text("mine")
    (folder / ("jit_other-" + "0" * 64 + "-cache")).write_bytes(b"garbage")
    (folder / "sub").mkdir()
    (folder / "sub" / "x-cache").write_bytes(b"garbage")
    return set()


@dataclasses.dataclass(frozen=True)
class Damage:
    id: str
    apply: Callable[[Path], set[str]]  # damages the folder; returns the entries it damaged


DAMAGE = [
    Damage("truncated, random and swapped entries", _damage_mixed),
    Damage("the record of hashes unreadable", _damage_record),
    Damage("foreign files and names", _foreign_files),
]


@pytest.mark.parametrize("case", DAMAGE, ids=lambda c: c.id)
def test_a_damaged_or_foreign_entry_costs_a_recompile_never_a_wrong_result(cold, case):
    work, folder, template, first = cold
    restore(folder, template)
    before = set(os.listdir(folder))
    damaged = case.apply(folder)
    run = train(work, str(folder))
    assert run.fingerprint == first.fingerprint and run.accuracy == first.accuracy
    assert not run.hits & damaged, sorted(run.hits & damaged)  # none of them was loaded
    assert run.hits == set(entries(template)) - damaged  # every intact one was
    added = set(os.listdir(folder)) - before
    if case.apply is _foreign_files:  # jaxnet removed only the unknown entry
        assert "notes.txt" in added and (folder / "sub" / "x-cache").exists()
        assert ("jit_other-" + "0" * 64 + "-cache") not in added


# --------------------------------------------------------------------------- settings


def test_two_runs_at_once_share_one_folder(cold):
    work, _, _, first = cold
    folder = work / "shared"
    runs = [finish(p) for p in [start(work, str(folder)), start(work, str(folder))]]
    for run in runs:
        assert run.proc.returncode == 0 and "Traceback" not in run.output, run.output[-3000:]
        assert run.fingerprint == first.fingerprint
    third = train(work, str(folder))
    assert third.hits and third.fingerprint == first.fingerprint


def test_an_unusable_folder_is_one_warning_and_the_run_goes_on(cold):
    work, _, _, first = cold
    (work / "a-file").write_text("in the way")
    run = train(work, "a-file/xla", JAX_LOG_COMPILES="0")
    warnings = [line for line in run.proc.stdout.splitlines() if "compile cache" in line]
    assert len(warnings) == 1 and warnings[0].startswith("jaxnet: compile cache: cannot use ")
    assert "a-file/xla" in warnings[0] and "off" in warnings[0]
    assert run.fingerprint == first.fingerprint
    assert (work / "a-file").read_text() == "in the way"


@pytest.mark.parametrize("env, flag, match", [
    ({ENV: ""}, None, r"^jaxnet: error: JAXNET_COMPILATION_CACHE: expected a folder or off, "
                      r"got ''"),
    ({ENV: "   "}, None, r"JAXNET_COMPILATION_CACHE: expected a folder or off, got '   '"),
    ({"JAXNET_COMPILATION_CACHE_MAX_BYTES": "1G"}, None,
     r"^jaxnet: error: JAXNET_COMPILATION_CACHE_MAX_BYTES: expected a positive int of bytes"),
    ({"JAXNET_COMPILATION_CACHE_MAX_BYTES": "0"}, None, r"MAX_BYTES: expected a positive int"),
    ({}, "", r"argument --compile-cache: expected a folder or off, got ''"),
])
def test_bad_settings_are_one_line_errors(monkeypatch, capsys, env, flag, match):
    from jaxnet import cli

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = ["train", "mnist", "--data-dir", "data", "--no-progress"]
    try:
        code = cli.main(argv + ([] if flag is None else ["--compile-cache", flag]))
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(match, err, re.M), err
    assert "Traceback" not in err
    assert err.startswith("usage: jaxnet train mnist") or len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("environ, setting, expected", [
    ({}, None, "{home}/.cache/jaxnet/xla"),
    ({"XDG_CACHE_HOME": "/x/c"}, None, "/x/c/jaxnet/xla"),
    ({ENV: "rel/xla"}, None, "{cwd}/rel/xla"),
    ({ENV: "~/xla"}, None, "{home}/xla"),
    ({ENV: "/a/b"}, "c", "{cwd}/c"),  # the flag wins
    ({ENV: "/a/b"}, "OFF", None),
    ({ENV: "off"}, "/a/b", "/a/b"),
    *[({ENV: word}, None, None) for word in ("off", "Off", "0", "false", "FALSE", "no")],
])
def test_the_folder_a_setting_names(tmp_path, environ, setting, expected):
    got = cc.resolve(setting, environ=environ)
    if expected is None:
        assert got is None
    else:
        home = os.path.expanduser("~")
        assert got == Path(expected.format(home=home, cwd=os.getcwd()))


# --------------------------------------------------------------------------- the folder's care


def _sealed_folder(folder: Path, sizes: dict[str, int]) -> None:
    folder.mkdir()
    import hashlib

    record = {}
    for i, (name, size) in enumerate(sizes.items()):
        (folder / name).write_bytes(bytes([i]) * size)
        os.utime(folder / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
        record[name] = hashlib.sha256(bytes([i]) * size).hexdigest()
    (folder / cc.MANIFEST).write_text(json.dumps({"version": 1, "entries": record}))


def test_the_size_bound_drops_the_oldest_entries_and_only_entries(tmp_path):
    folder = tmp_path / "xla"
    _sealed_folder(folder, {"a-cache": 100, "b-cache": 100, "c-cache": 100})
    (folder / ("jit_f-" + "d" * 64 + "-cache")).write_bytes(b"x")  # unsealed: removed
    (folder / "notes.txt").write_text("mine")
    (folder / "dir-cache").mkdir()
    kept = cc._prepare(folder, limit=250)
    assert kept == {"b-cache", "c-cache"}
    assert sorted(os.listdir(folder)) == sorted(
        ["b-cache", "c-cache", "notes.txt", "dir-cache", cc.MANIFEST])
    assert set(json.loads((folder / cc.MANIFEST).read_text())["entries"]) == kept


def test_only_whole_entries_are_sealed(tmp_path, monkeypatch):
    """An entry another process is still writing (a cut stream) is never recorded as good."""
    folder = tmp_path / "xla"
    folder.mkdir()
    monkeypatch.setitem(cc._state, "folder", folder)
    monkeypatch.setitem(cc._state, "present", {"old-cache"})
    whole = zlib.compress(b"an executable" * 100)
    (folder / "old-cache").write_bytes(whole)  # there before: another process's to seal
    (folder / "whole-cache").write_bytes(whole)
    (folder / "cut-cache").write_bytes(whole[:-5])
    (folder / "junk-cache").write_bytes(b"junk")
    assert cc.seal() == 1
    assert list(json.loads((folder / cc.MANIFEST).read_text())["entries"]) == ["whole-cache"]


def test_jaxs_own_cache_setting_is_respected(tmp_path, monkeypatch, caplog):
    import jax

    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setitem(cc._state, "decided", False)
    monkeypatch.setitem(cc._state, "warned", set())
    monkeypatch.setenv(ENV, str(tmp_path / "jaxnets"))
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    try:
        with caplog.at_level(logging.INFO, logger="jaxnet"):
            assert cc.enable() == tmp_path / "theirs"
            assert cc.enable("elsewhere") == tmp_path / "theirs"
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert not (tmp_path / "jaxnets").exists() and not (tmp_path / "elsewhere").exists()
    # said (the CLI prints it) only when --compile-cache asked for another folder
    assert [r.getMessage() for r in caplog.records] == [
        f"compile cache: JAX's own jax_compilation_cache_dir {tmp_path / 'theirs'} "
        f"(--compile-cache elsewhere is not used)"]


def test_fit_turns_the_cache_on_and_the_tests_never_use_the_home_folder(monkeypatch):
    """``fit`` alone (no CLI) caches in ``$JAXNET_COMPILATION_CACHE``, which the test session
    points at a temporary folder (conftest), never ``~/.cache/jaxnet/xla``."""
    import jax
    import optax

    from jaxnet import losses, nn
    from jaxnet.train import TrainState, fit

    folder = cc.resolve()
    if folder is None:
        pytest.skip(f"{ENV} is off for this session")
    assert folder != cc.default_folder()
    apply, params, model_state = nn.split(nn.MLP(3, [5], 2, rngs=0))
    state = TrainState.create(params, optax.sgd(0.1), model_state=model_state)
    data = (np.ones((8, 3), np.float32), np.array([0, 1] * 4))
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setitem(cc._state, "decided", False)  # as in a fresh process: fit decides
    monkeypatch.setitem(cc._state, "folder", None)
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        fit(state, apply, losses.cross_entropy, optax.sgd(0.1), data, epochs=1, batch_size=4,
            progress=False, log=None)
        assert jax.config.jax_compilation_cache_dir == str(folder)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert entries(folder)  # the programs fit compiled are on disk


def test_a_link_named_like_an_entry_is_unlinked_and_its_target_kept(tmp_path):
    """JAX follows a link named like one of its keys and would load whatever it points at;
    removing the link (never its target) costs a recompile."""
    folder = tmp_path / "xla"
    folder.mkdir()
    target = tmp_path / "other program.bin"
    target.write_bytes(zlib.compress(b"another program"))
    name = "jit_f-" + "e" * 64 + "-cache"
    (folder / name).symlink_to(target)
    (folder / "project-cache").symlink_to(target)  # the user's own link: not JAX's name
    cc._prepare(folder, limit=1000)
    assert sorted(os.listdir(folder)) == ["project-cache"]
    assert target.read_bytes() == zlib.compress(b"another program")
