"""The ``jaxnet`` command, run as a user runs it."""

import json

import pytest

from conftest import run_python


def jaxnet(*args, **kwargs):
    return run_python("-m", "jaxnet", *args, **kwargs)


def test_help_lists_the_flags():
    proc = jaxnet("train", "mnist", "--help")
    assert proc.returncode == 0
    for flag in ("--data-dir", "--epochs", "--batch-size", "--optimizer", "--lr", "--momentum",
                 "--hidden", "--seed", "--checkpoint-dir", "--resume", "--plot", "--json",
                 "--recipe"):
        assert flag in proc.stdout


def test_train_mnist_one_epoch_end_to_end(mnist_path, tmp_path):
    out_json, out_png = tmp_path / "run.json", tmp_path / "curves.png"
    proc = jaxnet("train", "mnist", "--data-dir", str(mnist_path), "--epochs", "1",
                  "--hidden", "128", "--json", str(out_json), "--plot", str(out_png),
                  "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/1  train_loss" in proc.stdout and "val_accuracy" in proc.stdout
    assert "test accuracy: 0.9" in proc.stdout
    result = json.loads(out_json.read_text())
    assert result["test_accuracy"] > 0.93
    assert len(result["epoch_seconds"]) == 1 and result["compile_seconds"] > 0
    assert result["train_seconds"] > 0 and len(result["params_fingerprint"]) == 64
    assert result["config"]["hidden"] == [128]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,match", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--lr", "-1"], "argument --lr: expected a positive float, got '-1'"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive int, got '0'"),
    (["--hidden", "512,x"], "argument --hidden: expected comma-separated layer sizes"),
    (["--recipe", "fast"], "argument --recipe: invalid choice: 'fast'"),
    (["--resume"], "--resume: needs --checkpoint-dir"),
    (["--momentum", "2"], r"momentum: expected a number in \[0, 1\), got 2.0"),
])
def test_bad_flags_are_one_line_usage_errors(args, match):
    import re

    proc = jaxnet("train", "mnist", *args)
    assert proc.returncode == 2
    assert re.search(match, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_is_a_one_line_error(tmp_path):
    proc = jaxnet("train", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--no-progress",
                  env={"JAXNET_OFFLINE_TEST": "1", "https_proxy": "http://127.0.0.1:9",
                       "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("jaxnet: error: MNIST files missing")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_existing_json_is_never_overwritten(tmp_path, mnist_path):
    out = tmp_path / "mine.json"
    out.write_text('{"precious": true}')
    proc = jaxnet("train", "mnist", "--data-dir", str(mnist_path), "--json", str(out))
    assert proc.returncode == 2 and "already exists; pass --overwrite" in proc.stderr
    assert out.read_text() == '{"precious": true}'
