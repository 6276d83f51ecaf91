"""``jaxnet.mnist.convert`` and ``jaxnet convert``: the MNIST MLP between PyTorch files and
``jaxnet train mnist`` checkpoints (each test runs in its own temporary working directory)."""

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_python
from jaxnet import cli, interop, mnist, nn
from jaxnet.train import evaluate


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed: pip install "
                               "'jaxnet-course[torch]'")


@pytest.fixture
def no_torch(monkeypatch):
    """``import torch`` fails, as on a machine without the extra."""
    monkeypatch.setitem(sys.modules, "torch", None)


def run_cli(argv):
    """``jaxnet …`` in this process: ``(status, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def jaxnet(*args):
    return run_python("-m", "jaxnet", *args, cwd=Path.cwd())


def test_interop_convert_is_mnist_convert_for_one_release():
    assert interop.convert is mnist.convert


def test_cli_convert_round_trip_and_the_converted_checkpoint_resumes(mnist_path, tmp_path):
    model = mnist.build_model(mnist.MnistConfig(hidden=(32,), seed=3))
    interop.save("start.safetensors", model)
    start = interop.load("start.safetensors")

    status, out, err = run_cli(["convert", "start.safetensors", "--to", "ck",
                                "--hidden", "32", "--epochs", "1"])
    assert status == 0, err
    assert "converted start.safetensors -> ck (MLP 784-32-10, 4 arrays, 25,450 values)" in out
    assert ("jaxnet train mnist --checkpoint-dir ck --resume --recipe default --epochs 1 "
            "--hidden 32") in out
    status, out, err = run_cli(["convert", "ck", "--to", "back.safetensors"])
    assert status == 0, err
    back = interop.load("back.safetensors")
    assert list(back) == list(start)
    assert all(back[k].tobytes() == start[k].tobytes() for k in start)  # bit-identical

    # the converted checkpoint continues with `jaxnet train mnist --resume`
    proc = jaxnet("train", "mnist", "--data-dir", str(mnist_path), "--checkpoint-dir", "ck",
                  "--resume", "--hidden", "32", "--epochs", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resume: continuing from ck/step_00000000 (epoch 0)" in proc.stdout
    assert "epoch 1/1  train_loss" in proc.stdout and "test accuracy: 0.9" in proc.stdout
    status, _, err = run_cli(["convert", "ck", "--to", "trained.safetensors"])
    assert status == 0, err
    trained = interop.load("trained.safetensors")
    assert not np.array_equal(trained["0.weight"], start["0.weight"])
    status, _, _ = run_cli(["convert", "ck", "--to", "step0.safetensors", "--step", "0"])
    assert status == 0 and interop.load("step0.safetensors")["0.weight"].tobytes() == \
        start["0.weight"].tobytes()


def test_a_converted_checkpoint_at_its_last_epoch_only_evaluates(mnist_path):
    config = mnist.MnistConfig(hidden=(16,), epochs=2, seed=1)
    model = mnist.build_model(config.with_updates(seed=9))
    interop.save("model.safetensors", model)
    mnist.convert("model.safetensors", "ck", config=config, trained_epochs=2)
    data = mnist.load_data(mnist_path)
    result = mnist.train_mnist(config, data=data, checkpoint_dir="ck", resume=True,
                               progress=False, log=None)
    assert result["history"] == [] and result["epoch_seconds"] == []  # nothing trained
    apply, params, state = nn.split(model)
    want = evaluate(lambda p, s, x, **m: apply(p, s, mnist.normalize(x), **m), params,
                    data[1], model_state=state)
    assert result["test_accuracy"] == want["accuracy"]


@pytest.mark.parametrize("argv,message", [
    (["convert", "nowhere.pt", "--to", "ck"], "source: nowhere.pt does not exist"),
    (["convert", "model.safetensors", "--to", "taken.safetensors"],
     "destination: taken.safetensors already exists; pass overwrite=True (--overwrite)"),
    (["convert", "model.safetensors", "--to", "full"],
     "destination: full exists and is not an empty folder"),
    (["convert", "model.npz", "--to", "ck"], "source: expected a .safetensors or "
                                             ".pt/.pth/.bin file, got 'model.npz'"),
    (["convert", "full", "--to", "out"], "destination: converting the checkpoint folder full "
                                         "needs a .safetensors or .pt/.pth/.bin file"),
    (["convert", "model.safetensors", "--to", "ck", "--hidden", "64"],
     "state_dict does not match MLP: 3 mis-shaped: '0.weight' expected (64, 784), got "
     "(32, 784)"),
    (["convert", "model.safetensors", "--to", "ck", "--momentum", "2"],
     "--momentum: expected a number in [0, 1), got 2.0"),
    (["convert", "model.safetensors", "--to", "ck", "--key", "model"],
     "key: only for PyTorch files"),
    (["convert", "model.safetensors", "--to", "copy.pt", "--hidden", "32"],
     "config: not used when converting copy.pt (a format change only)"),
    (["convert", "full", "--to", "x.safetensors", "--key", "m"],
     "key: not used when converting full (a checkpoint folder), got 'm'"),
    (["convert", "full", "--to", "x.safetensors"], "no complete checkpoint in full"),
])
def test_cli_convert_errors_are_one_line(argv, message, tmp_path):
    interop.save("model.safetensors", mnist.build_model(mnist.MnistConfig(hidden=(32,))))
    Path("taken.safetensors").write_bytes(b"mine")
    Path("full").mkdir()
    Path("full/notes.txt").write_text("mine")
    Path("model.npz").write_bytes(b"x")
    status, out, err = run_cli(argv)
    assert status in (1, 2) and out == ""
    assert err.count("\n") == 1 and err.startswith("jaxnet: error: "), err
    assert message in err, err
    assert Path("taken.safetensors").read_bytes() == b"mine"
    assert Path("full/notes.txt").read_text() == "mine" and os.listdir("full") == ["notes.txt"]
    assert not any(Path(p).exists() for p in ("ck", "out", "copy.pt", "x.safetensors"))


def test_cli_convert_pt_without_torch_is_one_line(no_torch, tmp_path):
    import zipfile

    with zipfile.ZipFile("model.pt", "w") as z:  # what torch.save writes: a zip archive
        z.writestr("model/data.pkl", b"")
    status, _, err = run_cli(["convert", "model.pt", "--to", "ck"])
    assert status == 1 and err.count("\n") == 1
    assert "needs PyTorch: pip install 'jaxnet-course[torch]'; or use a .safetensors file" in err


def test_cli_convert_pytorch_to_safetensors_format_only(torch, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    torch.save(model.state_dict(), "model.pth")
    status, out, err = run_cli(["convert", "model.pth", "--to", "model.safetensors"])
    assert status == 0, err
    assert "(4 arrays, 23 values)" in out
    sd = torch.load("model.pth", weights_only=True)
    loaded = interop.load("model.safetensors")
    assert all(np.array_equal(sd[k].numpy(), loaded[k]) for k in sd)
