"""Hooks on every path, a continued ``fit``, and what the learner sees printed (issue 17: 3, 10).

The learner's habits: a per-batch loss recorder (the course logs every batch),
a notebook cell with ``fit`` run again on the state it returned, ``print`` of
metrics, ``nn.summary`` in a REPL, ``dir(module)`` / tab completion.
"""

import importlib
import pkgutil

import jax
import numpy as np
import optax
import pytest

import jaxnet
from jaxnet import callbacks, fingerprint, losses, nn
from jaxnet.data import ArrayDataset, DataLoader, Dataset
from jaxnet.train import TrainState, fit, make_epoch_runner


def blobs(n=100, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int32)
    x = (rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y]).astype(np.float32)
    return x, y


class PerItem(Dataset):
    """The course's Dataset: one example per __getitem__."""

    def __init__(self, x, y):
        self.features, self.labels = x, y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self):
        return self.labels.shape[0]


class Net(nn.Module):
    """Dropout and BatchNorm: the per-step key and the statistics must continue too."""

    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(4, 16, rngs=rngs)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.fc2(self.drop(jax.nn.relu(self.bn(self.fc1(x)))))


def setup():
    apply, params, model_state = nn.split(Net(rngs=nn.Rngs(0)))
    optimizer = optax.adam(1e-2)
    return apply, optimizer, TrainState.create(params, optimizer, model_state=model_state)


class LossRecorder(callbacks.Callback):
    """What a learner writes to plot the loss of every batch."""

    def __init__(self):
        self.calls = []

    def on_batch_end(self, run, batch, loss):
        self.calls.append((batch, loss))


# ------------------------------------------------------------ per-batch hooks

def test_on_batch_end_runs_on_the_scan_path_with_the_per_item_paths_calls_and_values():
    x, y = blobs()  # 100 rows, batch 32: the last batch is padded
    recorded = []
    for data in (ArrayDataset(x, y), PerItem(x, y)):
        apply, optimizer, state = setup()
        rec = LossRecorder()
        loader = DataLoader(data, batch_size=32, shuffle=True, seed=3)
        fit(state, apply, losses.cross_entropy, optimizer, loader, epochs=2,
            callbacks=[rec], progress=False, log=None)
        recorded.append(rec.calls)
    scan, loop = recorded
    assert [i for i, _ in scan] == [i for i, _ in loop] == [0, 1, 2, 3] * 2
    for (_, a), (_, b) in zip(scan, loop, strict=True):
        assert type(a) is type(b) and a.shape == b.shape == () and a.dtype == b.dtype
    np.testing.assert_allclose([float(v) for _, v in scan], [float(v) for _, v in loop],
                               rtol=1e-6, atol=1e-6)


def test_make_epoch_runner_calls_on_batch_on_the_scan_path_in_order():
    x, y = blobs(n=40)
    apply, optimizer, state = setup()
    run = make_epoch_runner(apply, losses.cross_entropy, optimizer,
                            DataLoader(ArrayDataset(x, y), batch_size=16))
    seen = []
    state, batch_losses, _ = run(state, 0, lambda i, loss: seen.append((i, float(loss))))
    assert [i for i, _ in seen] == [0, 1, 2]
    assert [v for _, v in seen] == batch_losses.tolist()


def test_progress_bar_still_counts_epochs_on_the_scan_path():
    x, y = blobs(n=64)
    apply, optimizer, state = setup()
    bar = callbacks.ProgressBar()
    totals = []

    class Peek(callbacks.Callback):
        def on_epoch_end(self, run, epoch, state, logs):
            totals.append((bar.bar.n, bar.bar.total))

    fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2, batch_size=16,
        callbacks=[bar, Peek()], progress=False, log=None)
    assert totals == [(1, 2), (2, 2)]


# ------------------------------------------------------------ a continued fit

@pytest.mark.parametrize("dataset", [ArrayDataset, PerItem])
def test_three_epochs_then_three_more_equal_six_bit_for_bit(dataset):
    x, y = blobs()
    loader = DataLoader(dataset(x, y), batch_size=32, shuffle=True, seed=1)

    def train(state, epochs, rec=None, lines=None):
        return fit(state, apply, losses.cross_entropy, optimizer, loader, epochs=epochs,
                   callbacks=[rec] if rec else [], progress=False,
                   log=None if lines is None else lines.append)

    apply, optimizer, state = setup()
    straight_rec = LossRecorder()
    straight, straight_history = train(state, 6, straight_rec)

    apply, optimizer, state = setup()
    rec, lines = LossRecorder(), []
    state, first = train(state, 3, rec)
    state, more = train(state, 6, rec, lines)  # the notebook cell, continued
    assert [e["epoch"] for e in first] == [1, 2, 3]
    assert [e["epoch"] for e in more] == [4, 5, 6]
    assert lines[0].startswith("continuing at epoch 4 (state.step 12 = 3 epochs of 4 steps)")
    assert lines[1].startswith("epoch 4/6  train_loss")
    assert fingerprint(state) == fingerprint(straight)
    assert [e["train_loss"] for e in first + more] == [e["train_loss"]
                                                     for e in straight_history]
    assert [(i, float(v)) for i, v in rec.calls] == [(i, float(v))
                                                     for i, v in straight_rec.calls]


def test_running_the_same_fit_cell_again_says_which_epochs_to_pass():
    x, y = blobs()
    apply, optimizer, state = setup()
    state, _ = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=3,
                   batch_size=32, progress=False, log=None)
    with pytest.raises(ValueError, match=r"epochs: expected more than the 3 epochs this state "
                                         r"has trained .* got 3; pass epochs=6 to train 3 more"):
        fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=3, batch_size=32,
            progress=False, log=None)
    # the refused call consumed nothing: the state continues
    state, history = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=4,
                         batch_size=32, progress=False, log=None)
    assert [e["epoch"] for e in history] == [4] and int(state.step) == 16


def test_a_state_in_the_middle_of_an_epoch_is_refused_with_the_fix():
    x, y = blobs()
    apply, optimizer, state = setup()
    state, _ = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=1,
                   batch_size=32, progress=False, log=None)  # 4 steps
    with pytest.raises(ValueError, match=r"state: expected a state at the end of an epoch of "
                                         r"train_data \(3 steps each\) to continue from, got "
                                         r"state.step 4; continue with the same data"):
        fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=5, batch_size=48,
            progress=False, log=None)  # another batch size: 3 steps per epoch


def test_a_resumed_run_still_takes_its_epoch_from_the_checkpoint(tmp_path):
    x, y = blobs()
    apply, optimizer, state = setup()
    fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=2, batch_size=32,
        checkpoint_dir=tmp_path, progress=False, log=None)
    apply, optimizer, fresh = setup()
    lines = []
    state, history = fit(fresh, apply, losses.cross_entropy, optimizer, (x, y), epochs=3,
                         batch_size=32, checkpoint_dir=tmp_path, resume=True,
                         progress=False, log=lines.append)
    assert [e["epoch"] for e in history] == [1, 2, 3] and int(state.step) == 12
    assert not any(line.startswith("continuing") for line in lines)


# ------------------------------------------------------------ what prints

def test_epoch_log_prints_metrics_rounded_and_history_keeps_full_floats():
    run = callbacks.Run(apply=None, loss_fn=None, optimizer=None, loader=None, epochs=5)
    accuracy = float(np.float32(0.9302))  # what a float32 mean gives: 0.9301999807357788
    logs = {"epoch": 2, "train_loss": 0.123456789, "val_loss": 0.25, "val_accuracy": accuracy,
            "seconds": 1.5}
    lines = []
    callbacks.EpochLog(lines.append).on_epoch_end(run, 2, None, logs)
    assert lines == ["epoch 2/5  train_loss 0.1235  val_loss 0.2500  val_accuracy 0.9302  1.50s"]
    assert logs["val_accuracy"] == accuracy


def test_epoch_log_shows_a_fast_epochs_real_time_not_zero():
    """A toy dataset's epoch takes milliseconds: the time column says how many (it said 0.00s)."""
    run = callbacks.Run(apply=None, loss_fn=None, optimizer=None, loader=None, epochs=3)
    lines = []
    for epoch, seconds in ((1, 0.4567), (2, 0.00243), (3, 0.0000312)):
        logs = {"epoch": epoch, "train_loss": 0.5, "seconds": seconds}
        callbacks.EpochLog(lines.append).on_epoch_end(run, epoch, None, logs)
    assert [line.rsplit("  ", 1)[1] for line in lines] == ["457ms", "2.4ms", "0.031ms"]
    assert not any(line.endswith("0.00s") for line in lines)


def test_summary_prints_or_returns_never_both(capsys):
    model = nn.MLP(4, [8], 3, rngs=0)
    assert nn.summary(model, (2, 4)) is None  # a REPL shows nothing more
    printed = capsys.readouterr().out
    assert printed.count("Total params: 67") == 1
    text = nn.summary(model, (2, 4), print_fn=None)
    assert capsys.readouterr().out == ""
    assert text + "\n" == printed
    lines = []
    assert nn.summary(model, (2, 4), print_fn=lines.append) is None and lines == [text]


# ------------------------------------------------------------ dir() shows the API

def _public_modules():
    names = ["jaxnet"]
    for info in pkgutil.walk_packages(jaxnet.__path__, "jaxnet."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_dir_of_every_public_module_lists_its_api_not_its_imports(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    submodules = {info.name for info in pkgutil.iter_modules(getattr(module, "__path__", []))}
    extra = {n for n in dir(module) if not (n.startswith("__") and n.endswith("__"))}
    extra -= set(module.__all__) | {n for n in submodules if not n.startswith("_")}
    assert not extra, f"dir({name}) lists {sorted(extra)}"
    assert set(module.__all__) <= set(dir(module))
