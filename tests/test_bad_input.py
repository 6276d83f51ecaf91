"""Bad input everywhere: each case must raise a clear error naming the argument, the
expected and the actual value, and must leave every file the user had untouched."""

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnet import checkpoint, cli, datasets, losses, metrics, mnist, nn
from jaxnet.data import ArrayDataset, DataLoader, Dataset, random_split
from jaxnet.train import TrainState, evaluate, fit


class CliFailed(Exception):
    """The command exited non-zero; the message is its exit code and stderr."""


@dataclass
class Case:
    id: str
    call: Any  # call(ws: Path, mnist: Path)
    error: type
    match: str


def cli_run(*args):
    def call(ws, mnist_path):
        import contextlib
        import io

        argv = [a.format(ws=ws, mnist=mnist_path) for a in args]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = cli.main(["train", "mnist", "--no-progress", *argv])
            except SystemExit as e:
                code = e.code
        if code:
            raise CliFailed(f"exit {code}: {err.getvalue().strip()}")
    return call


def tiny_state():
    return TrainState.create(nn.split(nn.MLP(3, [4], 2, rngs=0)).params, optax.sgd(0.1))


def fit_with(**overrides):
    def call(ws, mnist_path):
        apply, params, _ = nn.split(nn.MLP(3, [4], 2, rngs=0))
        kwargs = dict(epochs=1, progress=False, log=None)
        kwargs.update({k: v.format(ws=ws) if isinstance(v, str) else v
                       for k, v in overrides.items()})
        data = kwargs.pop("data", (np.zeros((8, 3), np.float32), np.zeros(8, np.int32)))
        fit(TrainState.create(params, optax.sgd(0.1)), apply, losses.cross_entropy,
            optax.sgd(0.1), data, **kwargs)
    return call


Z, Y = jnp.zeros((4, 3)), jnp.array([0, 1, 2, 2])


class _LenOnly(Dataset):
    def __len__(self):
        return 4


class _Ragged(Dataset):
    def __getitem__(self, i):
        return np.zeros(i + 1), 0

    def __len__(self):
        return 4


class _DictItems(Dataset):
    def __getitem__(self, i):
        return {"x": np.zeros(3, np.float32), "y": 0}

    def __len__(self):
        return 8

CASES = [
    # models
    Case("mlp-in-features", lambda ws, m: nn.MLP(0, [3], 2, rngs=0), ValueError,
         "in_features: expected a positive int, got 0"),
    Case("mlp-hidden-size", lambda ws, m: nn.MLP(3, [3, -1], 2, rngs=0), ValueError,
         r"hidden\[1\]: expected a positive int, got -1"),
    Case("mlp-hidden-type", lambda ws, m: nn.MLP(3, 64, 2, rngs=0), TypeError,
         "hidden: expected a sequence of ints .* got 64"),
    Case("mlp-activation", lambda ws, m: nn.MLP(3, [3], 2, activation="swishy", rngs=0), ValueError,
         "activation: expected one of .* got 'swishy'"),
    Case("mlp-rngs", lambda ws, m: nn.MLP(3, [3], 2, rngs=1.5), TypeError,
         "MLP: rngs: expected an nn.Rngs such as nn.Rngs\\(0\\), .* got float 1.5"),
    Case("linear-out", lambda ws, m: nn.Linear(3, 0, rngs=nn.Rngs(0)), ValueError,
         "out_features: expected a positive int, got 0"),
    Case("linear-no-rngs", lambda ws, m: nn.Linear(3, 2), TypeError,
         r"Linear: rngs is required: pass rngs=nn.Rngs\(0\)"),
    Case("linear-int-rngs", lambda ws, m: nn.Linear(3, 2, rngs=0), TypeError,
         r"Linear: rngs: expected an nn.Rngs .* got int 0"),
    Case("dropout-p", lambda ws, m: nn.Dropout(1.5), ValueError,
         r"p: expected a dropout probability in \[0, 1\], got 1.5"),
    Case("mlp-dropout", lambda ws, m: nn.MLP(3, [3], 2, dropout=1.0, rngs=0), ValueError,
         r"dropout: expected a probability in \[0, 1\), got 1.0"),
    Case("batchnorm-input", lambda ws, m: nn.BatchNorm1d(4)(jnp.ones((2, 3))), ValueError,
         r"BatchNorm1d: expected input \(N, 4\) or \(N, 4, L\), got shape \(2, 3\)"),
    Case("dropout-train-no-key", lambda ws, m: nn.split(nn.MLP(3, [4], 2, dropout=0.5,
                                                                    rngs=0)).apply(
        *nn.split(nn.MLP(3, [4], 2, dropout=0.5, rngs=0))[1:], jnp.ones((2, 3)),
        train=True), ValueError, "rng: the model has Dropout, so apply.*needs rng="),
    Case("functional-not-module", lambda ws, m: nn.split(lambda x: x), TypeError,
         "model: expected an nn.Module .* got function"),
    # losses
    Case("ce-label-shape", lambda ws, m: losses.cross_entropy(Z, Y[:3]), ValueError,
         r"labels must have shape \(4,\) .* got \(3,\)"),
    Case("ce-label-dtype", lambda ws, m: losses.cross_entropy(Z, Y * 1.0), TypeError,
         "labels: expected a signed integer class index array, got float32"),
    Case("ce-label-range", lambda ws, m: losses.cross_entropy(Z, Y + 3), ValueError,
         r"labels: expected class indices in \[0, 2\] \(3 classes\), got 3 at index 0"),
    Case("nll-negative-label", lambda ws, m: losses.nll_loss(Z, Y - 1), ValueError,
         r"labels: expected class indices in \[0, 2\] \(3 classes\), got -1 at index 0"),
    Case("reduction", lambda ws, m: losses.nll_loss(Z, Y, reduction="avg"), ValueError,
         r"reduction: expected one of \('mean', 'sum', 'none'\), got 'avg'"),
    Case("mse-shape", lambda ws, m: losses.mse_loss(jnp.ones((4, 1)), jnp.ones(4)), ValueError,
         r"target must have the shape of input \(4, 1\), got \(4,\)"),
    Case("bce-shape", lambda ws, m: losses.binary_cross_entropy(jnp.ones(3), jnp.ones(2)),
         ValueError, r"targets must have the shape of probs \(3,\), got \(2,\)"),
    Case("mask-shape", lambda ws, m: losses.cross_entropy(Z, Y, mask=jnp.ones(5)), ValueError,
         r"mask: expected shape \(4,\) .* got \(5,\)"),
    Case("label-smoothing", lambda ws, m: losses.cross_entropy(Z, Y, label_smoothing=1.5),
         ValueError, r"label_smoothing: expected a number in \[0, 1\], got 1.5"),
    # data
    Case("dataset-lengths", lambda ws, m: ArrayDataset(np.zeros((5, 2)), np.zeros(4)),
         ValueError, r"expected equal first dimensions, got lengths \[5, 4\]"),
    Case("dataset-empty-args", lambda ws, m: ArrayDataset(), ValueError,
         "arrays: expected at least one array, got none"),
    Case("batch-size-zero", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), 0),
         ValueError, "batch_size: expected a positive int, got 0"),
    Case("batch-size-negative", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), -3),
         ValueError, "batch_size: expected a positive int, got -3"),
    Case("batch-size-float", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), 2.5),
         ValueError, "batch_size: expected a positive int, got 2.5"),
    Case("loader-empty", lambda ws, m: DataLoader(ArrayDataset(np.zeros((0, 2))), 2),
         ValueError, "dataset: expected at least one example, got an empty dataset"),
    Case("loader-seed", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), 2, seed=-1),
         ValueError, r"seed: expected an int in \[0, 2\*\*32\), got -1"),
    Case("loader-seed-huge", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), 2, seed=2**64),
         ValueError, r"seed: expected an int in \[0, 2\*\*32\), got 18446744073709551616"),
    Case("loader-workers", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), 2,
                                                    num_workers=-1),
         ValueError, "num_workers: expected a non-negative int, got -1"),
    Case("loader-not-dataset", lambda ws, m: DataLoader(5, 2), TypeError,
         "dataset: expected a map-style dataset with __getitem__ and __len__.* got int"),
    Case("dataset-no-getitem", lambda ws, m: next(iter(DataLoader(_LenOnly(), 2))),
         NotImplementedError, r"_LenOnly must define __getitem__\(self, index\)"),
    Case("collate-ragged", lambda ws, m: next(iter(DataLoader(_Ragged(), 2))), ValueError,
         "collate: cannot stack the examples' values into one array"),
    Case("state-params-leaf", lambda ws, m: TrainState.create({"w": "abc"}, optax.sgd(0.1)),
         TypeError, "params: expected arrays, got str 'abc' at w"),
    Case("summary-shape-string", lambda ws, m: nn.summary(nn.MLP(3, [4], 2, rngs=0), "64,3"),
         TypeError, "input_shape: expected a tuple of ints with the batch dimension, e.g. "
                    r"\(64, 784\), got '64,3'"),
    Case("summary-shape-zero", lambda ws, m: nn.summary(nn.MLP(3, [4], 2, rngs=0), (0, 3)),
         ValueError, "input_shape: expected a positive int, got 0"),
    Case("summary-shape-misfit", lambda ws, m: nn.summary(nn.MLP(3, [4], 2, rngs=0), (8, 5)),
         ValueError, r"input_shape: MLP cannot take an input of shape \(8, 5\): Linear: "
                     r"expected input \(\.\.\., 3\) \(in_features=3\), got shape \(8, 5\)"),
    Case("state-seed", lambda ws, m: TrainState.create({}, optax.sgd(0.1), seed=2**32),
         ValueError, r"seed: expected an int in \[0, 2\*\*32\), got 4294967296"),
    Case("drop-last-too-big", lambda ws, m: DataLoader(ArrayDataset(np.arange(4)), 8,
                                                       drop_last=True),
         ValueError, "batch_size: with drop_last=True it must be <= the dataset size 4, got 8"),
    Case("split-fractional", lambda ws, m: random_split(ArrayDataset(np.arange(10)), [2.5, 7.5]),
         ValueError, r"lengths: expected ints summing to 10 or fractions summing to 1, got "
                     r"\[2.5, 7.5\]"),
    Case("split-sum", lambda ws, m: random_split(ArrayDataset(np.arange(10)), [5, 4]),
         ValueError, r"summing to the dataset size 10, got \[5, 4\] \(sum 9\)"),
    # metrics
    Case("accuracy-shape", lambda ws, m: metrics.accuracy(np.zeros(3), np.zeros(4)), ValueError,
         r"y_pred: expected shape \(3,\) .* got \(4,\)"),
    Case("confusion-classes", lambda ws, m: metrics.confusion_matrix(Y, Y, num_classes=0),
         ValueError, "num_classes: expected a positive int, got 0"),
    # training
    Case("optimizer-type", lambda ws, m: TrainState.create({}, "adam"), TypeError,
         "optimizer: expected an optax GradientTransformation .* got str"),
    Case("fit-epochs", fit_with(epochs=-1), ValueError,
         "epochs: expected a non-negative int, got -1"),
    Case("fit-data-type", fit_with(data=[np.zeros(3)] * 3), TypeError,
         r"train_data: expected \(x, y\) arrays, a Dataset or a DataLoader, got a list of 3"),
    Case("fit-loader-and-batch-size", fit_with(
        data=DataLoader(ArrayDataset(np.zeros((8, 3), np.float32), np.zeros(8, np.int32)), 4),
        batch_size=2, shuffle=False), ValueError,
         "batch_size, shuffle: train_data is a DataLoader, which already sets them"),
    Case("fit-seed", fit_with(seed=-2), ValueError, r"seed: expected an int in \[0, 2\*\*32\)"),
    Case("fit-dict-examples", fit_with(data=_DictItems()), TypeError,
         r"batches must be tuples such as \(x, y\) to carry a mask, got dict; return a tuple"),
    Case("fit-batch-size", fit_with(batch_size=0), ValueError,
         "batch_size: expected a positive int, got 0"),
    Case("fit-existing-run", fit_with(checkpoint_dir="{ws}/ck"), checkpoint.CheckpointExistsError,
         r"already holds checkpoints \(steps \[1\]\); pass resume=True"),
    Case("evaluate-lengths", lambda ws, m: evaluate(lambda p, x: x, None,
                                                    (np.zeros((5, 2)), np.zeros(4, np.int32))),
         ValueError, r"expected equal first dimensions, got lengths \[5, 4\]"),
    Case("fit-labels-minus-one", fit_with(data=(np.zeros((8, 3), np.float32),
                                                -np.ones(8, np.int64))), ValueError,
         r"train_data: labels: expected class indices in \[0, 1\] \(the model's 2 outputs\), "
         r"got -1 at index 0"),
    Case("fit-optimizer-family", lambda ws, m: fit(tiny_state(), nn.split(nn.MLP(3, [4], 2,
                                                                               rngs=0)).apply,
                                                   losses.cross_entropy, optax.adam(0.1),
                                                   (np.zeros((8, 3), np.float32),
                                                    np.zeros(8, np.int32)), epochs=1,
                                                   progress=False, log=None), TypeError,
         r"optimizer: expected one of the family the state was created with"),
    Case("evaluate-one-hot", lambda ws, m: evaluate(
        nn.split(nn.MLP(3, [4], 2, rngs=0)).apply, tiny_state(),
        (np.zeros((8, 3), np.float32), np.eye(2, dtype=np.float32)[np.zeros(8, int)])),
         ValueError, r"data: labels: .* which gives no accuracy; for one-hot labels pass "
                     r"labels.argmax\(-1\)"),
    Case("evaluate-empty", lambda ws, m: evaluate(
        nn.split(nn.MLP(3, [4], 2, rngs=0)).apply, tiny_state(),
        (np.zeros((0, 3), np.float32), np.zeros(0, np.int32))),
         ValueError, "data: expected at least one example, got an empty dataset"),
    Case("config-lr", lambda ws, m: mnist.MnistConfig(lr=0.0), ValueError,
         "lr: expected a positive finite number, got 0.0"),
    Case("config-batch", lambda ws, m: mnist.MnistConfig(batch_size=-1), ValueError,
         "batch_size: expected a positive int, got -1"),
    # checkpoints
    Case("save-step", lambda ws, m: checkpoint.save(ws / "new", tiny_state(), step=-1),
         ValueError, "step: expected a non-negative int, got -1"),
    Case("save-keep", lambda ws, m: checkpoint.save(ws / "new", tiny_state(), step=1, keep=0),
         ValueError, "keep: expected a positive int or None, got 0"),
    Case("save-overwrite", lambda ws, m: checkpoint.save(ws / "ck", tiny_state(), step=1),
         checkpoint.CheckpointExistsError, "step_00000001 already exists; refusing to overwrite"),
    Case("save-unwritable", lambda ws, m: checkpoint.save(ws / "blocker" / "d", tiny_state(),
                                                          step=1),
         checkpoint.CheckpointError, "checkpoint_dir: could not write .*blocker"),
    Case("restore-shape", lambda ws, m: checkpoint.restore(
        ws / "ck", TrainState.create(nn.split(nn.MLP(3, [9], 2, rngs=0)).params,
                                     optax.sgd(0.1))),
         checkpoint.CheckpointMismatchError,
         r"layers/0/bias has shape \(4,\) float32 in the checkpoint but \(9,\) float32 in like"),
    Case("restore-missing", lambda ws, m: checkpoint.restore(ws / "nothing", tiny_state()),
         checkpoint.CheckpointNotFoundError, "no complete checkpoint in .*nothing"),
    # data files
    Case("mnist-split", lambda ws, m: datasets.load_mnist("validation", m), ValueError,
         "split: expected 'train' or 'test', got 'validation'"),
    Case("mnist-missing", lambda ws, m: datasets.load_mnist("test", ws / "empty"),
         FileNotFoundError, r"t10k-images-idx3-ubyte.gz.* were not found in .*empty"),
    Case("mnist-corrupt", lambda ws, m: datasets.load_mnist("test", ws / "bad"), ValueError,
         "t10k-labels-idx1-ubyte.gz: cannot be read as an IDX file"),
    # the command line
    Case("cli-unknown-flag", cli_run("--learning-rate", "0.1"), CliFailed,
         "exit 2: .*unrecognized arguments: --learning-rate 0.1"),
    Case("cli-optimizer", cli_run("--optimizer", "lbfgs"), CliFailed,
         "exit 2: .*--optimizer: invalid choice: 'lbfgs' \\(choose from '?adam'?, '?sgd'?\\)"),
    Case("cli-lr", cli_run("--lr", "0"), CliFailed,
         "exit 2: .*--lr: expected a positive float, got '0'"),
    Case("cli-epochs", cli_run("--epochs", "-2"), CliFailed,
         r"exit 2: .*--epochs: expected an int in \[1, 2147483647\] \(the step counter is "
         r"int32\), got '-2'"),
    Case("cli-batch", cli_run("--batch-size", "many"), CliFailed,
         "exit 2: .*--batch-size: expected an int, got 'many'"),
    Case("cli-hidden", cli_run("--hidden", "512,-4"), CliFailed,
         "exit 2: .*--hidden: expected positive layer sizes, got '512,-4'"),
    Case("cli-resume-alone", cli_run("--resume"), CliFailed,
         "exit 2: .*--resume: needs --checkpoint-dir"),
    Case("cli-json-exists", cli_run("--json", "{ws}/user.json"), CliFailed,
         "exit 2: .*--json: .*user.json already exists; pass --overwrite"),
    Case("cli-plot-folder", cli_run("--plot", "{ws}/no/such/dir/p.png"), CliFailed,
         "exit 2: .*--plot: cannot write .* is not a writable folder"),
    Case("cli-checkpoint-unwritable", cli_run("--checkpoint-dir", "{ws}/blocker/ck"), CliFailed,
         "exit 2: .*--checkpoint-dir: .*blocker/ck is not a writable folder"),
    Case("cli-checkpoint-existing-run", cli_run("--checkpoint-dir", "{ws}/ck"), CliFailed,
         r"exit 2: .*--checkpoint-dir: .*ck already holds checkpoints \(steps \[1\]\); "
         r"pass --resume"),
    Case("cli-data-corrupt", cli_run("--data-dir", "{ws}/bad"), CliFailed,
         "exit 1: jaxnet: error: .*t10k-labels-idx1-ubyte.gz: cannot be read"),
]


@pytest.fixture
def workspace(tmp_path, mnist_path, monkeypatch):
    """Files a user already has; every case must leave them exactly as they were."""
    monkeypatch.setattr(datasets.urllib.request, "urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline (test)")))
    (tmp_path / "user.json").write_text('{"mine": true}')
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz"):
        shutil.copy(mnist_path / name, bad / name)
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b damaged")
    checkpoint.save(tmp_path / "ck", tiny_state(), step=1)
    return tmp_path


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_there_are_at_least_30_cases_across_api_and_cli():
    assert len(CASES) >= 30
    assert sum(c.id.startswith("cli-") for c in CASES) >= 10
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, workspace, mnist_path):
    before = snapshot(workspace)
    with pytest.raises(case.error, match="(?s)" + case.match) as info:
        case.call(workspace, mnist_path)
    assert "Traceback" not in str(info.value)
    after = snapshot(workspace)
    assert {k: after.get(k) for k in before} == before, "a user file was changed or deleted"
