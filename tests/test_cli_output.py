"""Output never costs the run (issue 18, Deliver 3) and the memory pre-check (Deliver 4).

``jaxnet train mnist … | head -1``, ``2>&-`` and ``>&-`` run as real
subprocesses: training goes on, ``--json`` and the checkpoints are written,
and the exit status is the run's own (0: everything but printing succeeded).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from test_faults import write_dataset

from conftest import ROOT

TINY = ["--data-dir", "data", "--hidden", "16", "--batch-size", "64", "--val-split", "64"]


@pytest.fixture
def data(tmp_path):
    write_dataset(tmp_path / "data")
    return tmp_path


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _strict_json(path):
    """The file parsed as strict JSON (``NaN``/``Infinity`` are not JSON)."""
    def no_constant(name):
        raise AssertionError(f"{path} holds the non-JSON literal {name}")
    return json.loads(path.read_text(), parse_constant=no_constant)


def test_a_reader_that_stops_early_loses_nothing(data):
    """``| head -1``: the pipe closes after the first line; every epoch still trains, the
    JSON and the checkpoints are written, exit 0, and no 'Broken pipe' or logging trace."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxnet", "train", "mnist", *TINY, "--epochs", "3",
         "--checkpoint-dir", "ck", "--json", "run.json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=data, env=_env())
    first = proc.stdout.readline()
    proc.stdout.close()  # what head -1 does
    with proc.stderr:
        err = proc.stderr.read().decode()
    code = proc.wait(timeout=300)
    assert first.startswith(b"jaxnet: ")
    assert code == 0, err[-3000:]
    assert "Broken pipe" not in err and "Traceback" not in err and "Logging error" not in err
    assert _strict_json(data / "run.json")["history"][-1]["epoch"] == 3
    assert sorted(p for p in os.listdir(data / "ck") if p.startswith("step_"))[-1] == \
        "step_00000003"


@pytest.mark.parametrize("closed", ["2>&-", ">&-", ">&- 2>&-"])
def test_a_closed_stdout_or_stderr_never_ends_training(data, closed):
    """Cron and daemons start jaxnet without a stdout/stderr; the progress bar is on. No file
    jaxnet writes may take the closed descriptor's number (and receive XLA's log lines)."""
    proc = subprocess.run(
        ["bash", "-c", f'"$@" {closed}; echo "status $?"', "bash", sys.executable, "-m",
         "jaxnet", "train", "mnist", *TINY, "--epochs", "2", "--json", "run.json",
         "--checkpoint-dir", "ck"],
        cwd=data, env=_env(), capture_output=True, text=True, timeout=300)
    assert "status 0" in proc.stdout, (proc.stdout, proc.stderr)
    assert _strict_json(data / "run.json")["history"][-1]["epoch"] == 2


def run_fake(argv, result, monkeypatch, stdout=None):
    """``jaxnet train mnist argv`` in this process with ``train_mnist`` returning ``result``."""
    from jaxnet import cli, mnist

    monkeypatch.setattr(mnist, "load_data", lambda *a: (
        (np.zeros((10, 784), np.uint8), np.zeros(10, np.int32)),) * 2)
    monkeypatch.setattr(mnist, "train_mnist", lambda *a, **k: result)
    out = stdout or io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["train", "mnist", "--val-split", "2", "--batch-size", "4", "--hidden",
                         "8", "--no-progress", *argv])
    return code, err.getvalue()


def fake_result(**changes):
    history = [{"epoch": 1, "train_seconds": 1.0, "train_loss": 0.5, "run": 0}]
    return {"test_accuracy": 0.9, "test_loss": 0.3, "compile_seconds": 0.5,
            "train_seconds": 1.0, "train_seconds_total": 1.0, "params_fingerprint": "ab" * 32,
            "history": history, "config": {}, "epoch_seconds": [1.0], **changes}


def test_json_never_holds_nan_literals(tmp_path, monkeypatch):
    """A diverged run (--no-check-finite) writes NaN/Inf as null: the file stays JSON."""
    result = fake_result(test_loss=float("nan"), test_accuracy=np.float32(0.1))
    result["history"][0]["train_loss"] = np.float32("inf")
    result["history"][0]["val_loss"] = -math.inf
    code, err = run_fake(["--json", "r.json", "--no-check-finite"], result, monkeypatch)
    assert code == 0, err
    saved = _strict_json(tmp_path / "r.json")
    assert saved["test_loss"] is None and saved["history"][0]["train_loss"] is None
    assert saved["history"][0]["val_loss"] is None
    assert saved["test_accuracy"] == pytest.approx(0.1)


def test_a_non_ascii_json_name_under_an_ascii_stdout_exits_0(tmp_path, monkeypatch):
    """PYTHONIOENCODING=ascii: 'wrote ü.json' cannot be encoded; the file is written and the
    run succeeded, so the status is 0 and the line is printed with an escape."""
    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii", errors="strict", write_through=True)
    code, err = run_fake(["--json", "résumé ü.json"], fake_result(), monkeypatch, ascii_out)
    assert code == 0, err
    assert (tmp_path / "résumé ü.json").is_file()
    assert b"wrote r\\xe9sum\\xe9 \\xfc.json" in raw.getvalue()


def test_xla_flags_with_no_cpu_devices_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "jaxnet", "train", "mnist", "--epochs", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=0"))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr == ("jaxnet: error: XLA_FLAGS: --xla_force_host_platform_device_count "
                           "expected a positive int, got 0; remove it from XLA_FLAGS (use "
                           "--devices N to split the CPU)\n")


# --------------------------------------------------------------------------- the memory check

def _memory_case(monkeypatch, have_bytes, argv, n_images=60_000):
    from jaxnet import cli, mnist
    from jaxnet.cli import _train

    monkeypatch.setattr(_train, "_memory_bytes", lambda: have_bytes)
    monkeypatch.setattr(mnist, "load_data", lambda *a: (
        (np.zeros((n_images, 784), np.uint8), np.zeros(n_images, np.int32)),
        (np.zeros((10_000, 784), np.uint8), np.zeros(10_000, np.int32))))
    trained = []
    monkeypatch.setattr(mnist, "train_mnist", lambda *a, **k: trained.append(1) or fake_result())
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(["train", "mnist", "--no-progress", *argv])
    return code, err.getvalue(), trained


def test_memory_check_counts_the_data_on_every_device(monkeypatch):
    """64 CPU devices each hold the parameters, Adam's state, a global batch and their
    share of the data: ~0.9 GB in all, where one device needs ~0.24 GB; the check counts
    every device's copy and names --devices. (The mesh is a stand-in: this process's JAX
    has started with one CPU device.)"""
    from types import SimpleNamespace

    from jaxnet import parallel

    monkeypatch.setattr(parallel, "setup_mesh", lambda n, **k: SimpleNamespace(size=n))
    monkeypatch.setattr(parallel, "check_batch_size", lambda *a: None)
    monkeypatch.setattr(parallel, "describe", lambda mesh: f"{mesh.size} devices")
    code, err, trained = _memory_case(monkeypatch, 500_000_000,
                                      ["--devices", "64", "--batch-size", "128"])
    assert (code, trained) == (2, [])
    assert err.startswith("jaxnet: error: --devices: training needs about ")
    assert "the data on each of the 64 devices" in err and "choose fewer --devices" in err


def test_memory_check_counts_the_largest_batch(monkeypatch):
    code, err, trained = _memory_case(monkeypatch, 2_000_000_000,
                                      ["--batch-size", "55000", "--hidden", "4096,4096"])
    assert (code, trained) == (2, [])
    assert err.startswith("jaxnet: error: --batch-size: training needs about ")
    assert "choose a smaller --batch-size" in err


def test_memory_check_counts_the_optimizer_state(monkeypatch):
    """Adam keeps two moments per parameter: a model that fits with plain SGD does not."""
    from jaxnet.mnist._config import MnistConfig, param_count

    n = param_count(MnistConfig(hidden=(8192, 8192)))
    sgd = ["--hidden", "8192,8192", "--optimizer", "sgd", "--batch-size", "32"]
    have = int(4 * n * 3.5)  # params + grads fit, + 2 Adam moments do not
    assert _memory_case(monkeypatch, have, sgd)[0] == 0
    code, err, _ = _memory_case(monkeypatch, have, sgd[:2] + ["--batch-size", "32"])
    assert code == 2 and err.startswith("jaxnet: error: --hidden: training needs about ")
    assert "parameters, gradients and adam state" in err


def test_memory_check_passes_the_course_run(monkeypatch):
    assert _memory_case(monkeypatch, 8_000_000_000, ["--recipe", "course"])[0] == 0
