"""Each example runs as a user would run it; its printed numbers are asserted.

The examples run in a subprocess from a temporary working directory, with
relative paths for what they read and write, as a user types them.
"""

import os
import re

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import ROOT, run_python
from jaxnet import losses, nn
from jaxnet.data import DataLoader, Dataset
from jaxnet.train import TrainState, evaluate, fit

EXAMPLES = ["autograd_logistic", "custom_module", "mnist_course", "mnist_mlp", "predict",
            "random_binary", "regression", "toy_dataset"]


def run_example(name, *args, cwd):
    proc = run_python(str(ROOT / "examples" / f"{name}.py"), *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def number(pattern, text):
    match = re.search(pattern + r"\s*(-?\d+\.\d+)", text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


def test_every_example_is_tested():
    assert sorted(p.stem for p in (ROOT / "examples").glob("*.py")) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_help(name, tmp_path):
    out = run_example(name, "--help", cwd=tmp_path)
    assert "usage:" in out


def test_autograd_logistic_prints_course_numbers(tmp_path):
    out = run_example("autograd_logistic", cwd=tmp_path)
    assert number("loss =", out) == pytest.approx(0.0852, abs=1e-4)
    assert number("dL/dw1 =", out) == pytest.approx(-0.0898, abs=1e-4)
    assert number("dL/db =", out) == pytest.approx(-0.0817, abs=1e-4)


def test_toy_dataset_trains_to_full_accuracy_saves_and_reloads(tmp_path):
    out = run_example("toy_dataset", "--out-dir", "model", cwd=tmp_path)
    batch_lines = re.findall(r"^Epoch: 00(\d)/003 \| Batch 00(\d)/002 \| Train Loss: \d+\.\d\d$",
                             out, flags=re.M)
    # 3 epochs x 2 batches: 5 examples, batch_size=2, drop_last=True.
    assert batch_lines == [(e, b) for e in "123" for b in "01"]
    assert "train accuracy: 1.0\n" in out
    assert "test accuracy: 1.0\n" in out
    assert "test predictions: [0, 1]" in out
    assert "reloaded model gives identical predictions: True" in out
    assert (tmp_path / "model" / "step_00000003" / "manifest.json").is_file()


def test_custom_module_shows_course_numbers(tmp_path):
    out = run_example("custom_module", cwd=tmp_path)
    assert "Total params: 2,213" in out
    assert "Total number of trainable model parameters: 2213" in out
    assert "model.layers[0].weight.shape: (30, 50)" in out
    assert "model.layers[0].kernel.shape: (50, 30)" in out
    probs = re.search(r"class-membership probabilities: \[\[([^\]]+)\]\]", out).group(1)
    assert sum(float(p) for p in probs.split()) == pytest.approx(1.0, abs=1e-3)
    assert "nn.Softmax(dim=1) gives the same: True" in out
    assert "same through nn.split: True" in out
    assert re.search(r"predicted class \(argmax\): \[[012]\]", out)


def test_random_binary_reports_test_accuracy_and_says_labels_are_random(tmp_path):
    out = run_example("random_binary", cwd=tmp_path)
    assert "train 80 examples, test 20 examples" in out
    assert len(re.findall(r"^epoch \d/5", out, flags=re.M)) == 5
    assert 0.0 <= number("test accuracy:", out) <= 1.0
    assert "labels are random" in out


def test_regression_keeps_best_validation_checkpoint(tmp_path):
    out = run_example("regression", "--out-dir", "checkpoints", cwd=tmp_path)
    vals = [float(v) for v in re.findall(r"val_loss (\d+\.\d+)", out)]
    best_epoch = int(re.search(r"best epoch: (\d+)", out).group(1))
    assert len(vals) == 20
    assert vals[best_epoch - 1] == min(vals)
    assert number("best val_loss:", out) == pytest.approx(min(vals), abs=1e-4)
    test_loss = number("test loss of the best checkpoint:", out)
    assert test_loss < 0.1  # the target's variance is ~0.4; the noise floor is 0.01
    folder = tmp_path / "checkpoints"
    assert [p.name for p in folder.iterdir() if p.name.startswith("step_")] == \
        [f"step_{best_epoch:08d}"]


def test_mnist_mlp_example_on_real_data(mnist_path, tmp_path):
    data_dir = os.path.relpath(mnist_path, tmp_path)
    out = run_example("mnist_mlp", "--data-dir", data_dir, "--epochs", "1", cwd=tmp_path)
    assert "train 55000, validation 5000, test 10000 images" in out
    assert "Total params: 535,818" in out
    assert number("val_accuracy", out) > 0.93
    assert number("test accuracy:", out) > 0.93  # one epoch at lr 1e-3 measures ~0.95
    assert number("f1", out) > 0.93


def test_mnist_course_example_on_real_data(mnist_path, tmp_path):
    # The course's MNISTNet and recipe (Adam 0.01, batch 64) for 1 of its 5 epochs.
    data_dir = os.path.relpath(mnist_path, tmp_path)
    out = run_example("mnist_course", "--data-dir", data_dir, "--epochs", "1", cwd=tmp_path)
    assert re.search(r"^epoch 1/1  train_loss \d+\.\d+", out, flags=re.M)
    assert number("test accuracy:", out) > 0.9  # measured 0.9253 (seed 0)


def test_predict_loads_a_cli_run_in_a_fresh_process(mnist_path, tmp_path):
    # Train with the command (1 epoch of a tiny net), then predict in another process.
    data_dir = os.path.relpath(mnist_path, tmp_path)
    proc = run_python("-m", "jaxnet", "train", "mnist", "--data-dir", data_dir, "--epochs", "1",
                      "--hidden", "16", "--checkpoint-dir", "runs/mnist", "--no-progress",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_example("predict", "runs/mnist", "--index", "0", "--data-dir", data_dir,
                      cwd=tmp_path)
    match = re.fullmatch(r"digit (\d) \(probability (\d\.\d{3})\), label (\d)\n", out)
    assert match, out
    assert match[1] == match[3] == "7"  # test image 0 is a clear 7
    assert 0 < float(match[2]) <= 1


# ---------------------------------------------------------------------------- the course's code
# Pasted from the course; the only changes: torch.tensor -> jnp.array, torch.nn -> jaxnet.nn,
# forward -> __call__, and the layers take rngs (the course's torch.manual_seed(123)).

X_train = jnp.array([
    [-1.2, 3.1],
    [-0.9, 2.9],
    [-0.5, 2.6],
    [2.3, -1.1],
    [2.7, -1.5]
])
y_train = jnp.array([0, 0, 0, 1, 1])

X_test = jnp.array([
    [-0.8, 2.8],
    [2.6, -1.6],
])
y_test = jnp.array([0, 1])


class ToyDataset(Dataset):
    def __init__(self, X, y):
        self.features = X
        self.labels = y

    def __getitem__(self, index):
        one_x = self.features[index]
        one_y = self.labels[index]
        return one_x, one_y

    def __len__(self):
        return self.labels.shape[0]


class NeuralNetwork(nn.Module):
    def __init__(self, num_inputs, num_outputs, rngs):
        super().__init__()

        self.layers = nn.Sequential(

            # 1st hidden layer
            nn.Linear(num_inputs, 30, rngs=rngs),
            nn.ReLU(),

            # 2nd hidden layer
            nn.Linear(30, 20, rngs=rngs),
            nn.ReLU(),

            # output layer
            nn.Linear(20, num_outputs, rngs=rngs),
        )

    def __call__(self, x):
        logits = self.layers(x)
        return logits


def test_course_code_trains_through_fit(capsys):
    train_ds = ToyDataset(X_train, y_train)
    test_ds = ToyDataset(X_test, y_test)
    train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0,
                              drop_last=True)
    test_loader = DataLoader(test_ds, batch_size=2, shuffle=False, num_workers=0)

    model = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(123))
    assert nn.count_params(model) == 752
    assert model.layers[0].weight.shape == (30, 2)
    assert "Total params: 752" in nn.summary(model, (2, 2), print_fn=None)

    apply, params, model_state = nn.split(model)
    optimizer = optax.sgd(learning_rate=0.5)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=123)
    state, history = fit(state, apply, losses.cross_entropy, optimizer, train_loader,
                         epochs=3)

    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert len(re.findall(r"^epoch \d/3  train_loss", capsys.readouterr().out, re.M)) == 3
    assert int(state.step) == 3 * len(train_loader) == 6  # drop_last: 2 batches per epoch
    assert evaluate(apply, state, train_ds)["accuracy"] == 1.0  # all 5, not drop_last's 4
    assert evaluate(apply, state, test_loader)["accuracy"] == 1.0
    # The trained values go back into the user's own model object; calling it agrees.
    nn.load_state_dict(model, state.params)
    logits, _ = apply(state.params, state.model_state, X_test)
    np.testing.assert_array_equal(np.asarray(model(X_test)), np.asarray(logits))
    assert np.asarray(jnp.argmax(model(X_test), axis=1)).tolist() == [0, 1]
