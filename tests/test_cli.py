"""The ``jaxnet`` command, run as a user runs it."""

import json

import numpy as np
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
    (["--batch-size", "0"], r"argument --batch-size: expected an int in \[1, 2147483647\], "
                            r"got '0'"),
    (["--hidden", "512,x"], "argument --hidden: expected comma-separated layer sizes"),
    (["--recipe", "fast"], "argument --recipe: invalid choice: 'fast'"),
    (["--resume"], "--resume: needs --checkpoint-dir"),
    (["--momentum", "2"], r"momentum: expected a number in \[0, 1\), got 2.0"),
])
def test_bad_flags_are_one_line_usage_errors(args, match, capsys):
    """(In this process: parsing needs no subprocess; the end-to-end test above runs one.)"""
    import re

    from jaxnet import cli

    try:
        code = cli.main(["train", "mnist", *args])
    except SystemExit as e:
        code = e.code
    stderr = capsys.readouterr().err
    assert code == 2
    assert re.search(match, stderr), stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("usage: jaxnet train mnist") or len(stderr.splitlines()) == 1


def test_missing_data_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = jaxnet("train", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-progress",
                  env={"JAXNET_OFFLINE_TEST": "1", "https_proxy": "http://127.0.0.1:9",
                       "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("jaxnet: error: MNIST files missing")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list((tmp_path / "empty").iterdir()) == []  # nothing left behind


def test_a_missing_data_dir_is_an_error_and_is_not_created(tmp_path):
    from jaxnet import cli

    code = cli.main(["train", "mnist", "--data-dir", str(tmp_path / "nowhere")])
    assert code == 2 and not (tmp_path / "nowhere").exists()


def test_existing_json_is_never_overwritten(tmp_path, mnist_path):
    out = tmp_path / "mine.json"
    out.write_text('{"precious": true}')
    proc = jaxnet("train", "mnist", "--data-dir", str(mnist_path), "--json", str(out))
    assert proc.returncode == 2 and "already exists; pass --overwrite" in proc.stderr
    assert out.read_text() == '{"precious": true}'


@pytest.mark.parametrize("with_validation", [True, False])
def test_plot_labels_validation_and_draws_only_what_the_history_has(with_validation):
    import io

    from jaxnet.cli import _outputs

    history = [{"epoch": e, "train_loss": 1.0 / e} for e in (1, 2)]
    if with_validation:
        for e in history:
            e.update(val_loss=0.5, val_accuracy=0.9)
    buf = io.BytesIO()
    _outputs.plot(history, buf, "svg")
    svg = buf.getvalue().decode()
    assert ("validation" in svg) == with_validation and "test" not in svg.lower()


def test_resume_prints_this_runs_training_time_and_the_total(tmp_path, capsys, monkeypatch):
    """Timings stay consistent across a resume: 'training' is this process's, and the total
    over every epoch is printed beside it (never a total larger than the time to result)."""
    from jaxnet import cli, mnist

    history = [{"epoch": 1, "train_seconds": 50.0, "run": 0},
               {"epoch": 2, "train_seconds": 2.0, "run": 1}]
    fake = {"test_accuracy": 0.9, "test_loss": 0.3, "compile_seconds": 0.5,
            "train_seconds": 2.0, "train_seconds_total": 52.0, "params_fingerprint": "ab" * 32,
            "history": history, "config": {}, "epoch_seconds": [50.0, 2.0]}
    monkeypatch.setattr(mnist, "load_data", lambda *a: ((np.zeros((10, 784), np.uint8),
                                                         np.zeros(10, np.int32)),) * 2)
    monkeypatch.setattr(mnist, "train_mnist", lambda *a, **k: fake)
    assert cli.main(["train", "mnist", "--val-split", "2", "--batch-size", "4", "--hidden", "8",
                     "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "training 2.00s in this run (52.00s over all 2 epochs" in out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["train_seconds"] == 2.0 and saved["train_seconds_total"] == 52.0
    assert saved["time_to_result_seconds"] < 50


def test_a_second_signal_while_the_first_is_handled_is_ignored():
    """The first SIGINT/SIGTERM raises; a second one (a double Ctrl-C while jaxnet cleans up
    and prints its line) is ignored instead of raising a second traceback."""
    import signal

    from jaxnet.cli import _main

    state = {"signals": 0, "training": True}  # during training a signal raises
    previous = _main.install_signal_handlers(state)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt) as info:
            handler(signal.SIGTERM, None)
        assert isinstance(info.value, _main._Terminated)
        assert handler(signal.SIGINT, None) is None  # the second: ignored
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
