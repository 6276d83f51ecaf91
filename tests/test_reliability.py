"""Runs die: exact resume after SIGKILL, crash-safe saves, corrupt checkpoints, NaNs, seeds."""

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import ROOT, run_python
from jaxnet import checkpoint, fingerprint, losses, nn
from jaxnet.train import NonFiniteError, TrainState, fit

MNIST_ARGS = ["--epochs", "3", "--no-progress"]


def jaxnet_cli(*args):
    return run_python("-m", "jaxnet", "train", "mnist", *args)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended early:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("model", [[], ["--dropout", "0.2", "--hidden", "256"]],
                         ids=["mlp", "dropout"])
def test_sigkill_during_epoch_2_then_resume_equals_uninterrupted(mnist_path, tmp_path, model):
    data = ["--data-dir", str(mnist_path), *MNIST_ARGS, *model]
    straight = jaxnet_cli(*data, "--json", str(tmp_path / "straight.json"))
    assert straight.returncode == 0, straight.stderr[-2000:]
    # a "random" moment of epoch 2, scaled to this machine's epoch (a fixed
    # sleep outlasted a whole epoch on a quiet machine)
    epoch_2 = json.loads((tmp_path / "straight.json").read_text())["epoch_seconds"][1]
    delay = random.Random(0).uniform(0.05, 0.6) * epoch_2

    ck = tmp_path / "ck"
    with subprocess.Popen([sys.executable, "-m", "jaxnet", "train", "mnist", *data,
                           "--checkpoint-dir", str(ck)], cwd=ROOT, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        _wait_for(ck / "step_00000001" / "manifest.json", proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.all_steps(ck) == [1], "the kill did not land during epoch 2"

    resumed = jaxnet_cli(*data, "--checkpoint-dir", str(ck), "--resume",
                         "--json", str(tmp_path / "resumed.json"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resume: continuing from" in resumed.stdout and "(epoch 1)" in resumed.stdout
    a = json.loads((tmp_path / "straight.json").read_text())
    b = json.loads((tmp_path / "resumed.json").read_text())
    assert a["params_fingerprint"] == b["params_fingerprint"]
    assert a["test_accuracy"] == b["test_accuracy"]
    assert checkpoint.all_steps(ck) == [1, 2, 3]


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from jaxnet import checkpoint
    directory = sys.argv[1]
    step = (checkpoint.latest_step(directory) or 0) + 1
    print("ready", flush=True)
    while True:  # every array of checkpoint k holds the value k
        state = {"w": np.full((1024, 1024), step, np.float32),
                 "b": {"c": np.full(4096, step, np.int32)}}
        checkpoint.save(directory, state, step=step, keep=3)
        print("saved", step, flush=True)
        step += 1
""")


def test_kills_during_saves_never_leave_a_broken_checkpoint(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    ck = tmp_path / "ck"
    rng = random.Random(1)
    like = {"w": np.zeros((1024, 1024), np.float32), "b": {"c": np.zeros(4096, np.int32)}}
    seen = 0
    for _ in range(6):
        with subprocess.Popen([sys.executable, str(script), str(ck)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            # Wait for one completed save (so progress holds however loaded the machine
            # is), then kill at a random moment: the loop is always inside a save.
            assert proc.stdout.readline().startswith("saved"), proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        steps = checkpoint.all_steps(ck)
        # keep=3, plus one when the kill fell between a commit and the pruning after it
        # (pruning first could leave fewer intact checkpoints after a crash).
        assert len(steps) <= 3 + 1
        for step in steps:  # every listed checkpoint is complete and verifies
            restored = checkpoint.restore(ck, like=like, step=step)
            assert float(restored["w"][0, 0]) == step and int(restored["b"]["c"][-1]) == step
        assert not steps or steps[-1] >= seen  # progress is never lost
        seen = steps[-1] if steps else seen
    assert seen >= 6  # each of the 6 runs completed at least one save
    # the next completed save prunes back to exactly `keep`
    checkpoint.save(ck, like, step=seen + 1, keep=3)
    assert checkpoint.all_steps(ck) == [seen - 1, seen, seen + 1]


def _small_run(tmp_path, epochs, apply_override=None, resume=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    apply, params, _ = nn.split(nn.MLP(4, [8], 2, rngs=0))
    optimizer = optax.adam(1e-2)
    state = TrainState.create(params, optimizer)
    lines = []
    state, _ = fit(state, apply_override or apply, losses.cross_entropy, optimizer, (x, y),
                   epochs=epochs, batch_size=32, progress=False, log=lines.append,
                   checkpoint_dir=tmp_path, resume=resume, keep=5)
    return state, lines


def test_resume_without_checkpoint_starts_from_scratch_and_says_so(tmp_path):
    state, lines = _small_run(tmp_path, 2, resume=True)
    assert "no complete checkpoint" in lines[0] and "starting from scratch" in lines[0]
    assert checkpoint.all_steps(tmp_path) == [1, 2]


def test_corrupt_newest_falls_back_with_a_warning_and_keeps_the_bad_one(tmp_path):
    straight, _ = _small_run(tmp_path / "a", 3)
    _small_run(tmp_path / "b", 3)
    victim = next(p for p in (tmp_path / "b" / "step_00000003").rglob("*")
                  if p.is_file() and p.stat().st_size > 100 and p.name != "manifest.json")
    victim.write_bytes(victim.read_bytes()[:-7])
    resumed, lines = _small_run(tmp_path / "b", 3, resume=True)
    assert any(line.startswith("warning:") and "step_00000003" in line and "moved it to"
               in line for line in lines)
    assert "(epoch 2)" in next(line for line in lines if line.startswith("resume:"))
    assert fingerprint(resumed) == fingerprint(straight)
    assert [p.name for p in (tmp_path / "b").iterdir() if p.name.startswith("corrupt-")]


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    _small_run(tmp_path, 2)
    for step_dir in tmp_path.glob("step_*"):
        (step_dir / "manifest.json").write_text("{}")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(checkpoint.CheckpointCorruptError, match="no intact checkpoint"):
        _small_run(tmp_path, 3, resume=True)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing moved or deleted


def test_cli_resume_with_corrupt_checkpoints_is_one_line(tmp_path, mnist_path):
    ck = tmp_path / "ck"
    _small_run(ck, 1)
    (ck / "step_00000001" / "manifest.json").write_text("not json")
    proc = jaxnet_cli("--data-dir", str(mnist_path), "--checkpoint-dir", str(ck), "--resume",
                      "--no-progress")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no intact checkpoint" in lines[0] and "step_00000001" in lines[0]


def test_nan_keeps_the_last_good_checkpoint(tmp_path):
    _small_run(tmp_path, 1)
    good = fingerprint(checkpoint.restore(tmp_path, like=_small_run(tmp_path / "t", 1)[0]))

    apply = nn.split(nn.MLP(4, [8], 2, rngs=0))[0]

    def poisoned(params, state, x, **mode):
        out, state = apply(params, state, x, **mode)
        return out * jnp.nan, state

    with pytest.raises(NonFiniteError, match="epoch 2, step 0"):
        _small_run(tmp_path, 2, apply_override=poisoned, resume=True)
    assert checkpoint.all_steps(tmp_path) == [1]
    assert fingerprint(checkpoint.restore(tmp_path, like=_small_run(tmp_path / "u", 1)[0])) \
        == good


def test_cli_nan_guard_stops_and_names_the_step(mnist_path, tmp_path):
    proc = jaxnet_cli("--data-dir", str(mnist_path), "--optimizer", "sgd", "--lr", "1e30",
                      "--schedule", "constant", "--no-progress")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("jaxnet: error: non-finite values at epoch 1, step ")
    assert "loss" in line or "grad of layers/" in line


def test_same_seed_same_fingerprint_other_seed_differs_through_the_cli(mnist_path, tmp_path):
    prints = []
    for i, seed in enumerate(["5", "5", "6"]):
        out = tmp_path / f"{i}.json"
        proc = jaxnet_cli("--data-dir", str(mnist_path), "--epochs", "1", "--hidden", "64",
                          "--seed", seed, "--json", str(out), "--no-progress")
        assert proc.returncode == 0, proc.stderr[-2000:]
        prints.append(json.loads(out.read_text())["params_fingerprint"])
    assert prints[0] == prints[1] != prints[2]
