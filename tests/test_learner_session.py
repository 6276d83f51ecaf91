"""The course as a learner runs it: every scene in a notebook-like session that runs each
cell twice in one namespace (a re-executed notebook cell), in a subprocess, from a fresh
temporary folder with relative paths (issue 17, "be a learner").

The cells are the course's code with only the changes docs/pytorch_cheatsheet.md lists
(``rngs=`` for layers, ``seed=`` for the loader, ``fit`` or ``make_train_step`` for the
loop, ``jnp.argmax`` for ``torch.argmax``, ``checkpoint.save`` for ``torch.save``…). The
course's printed numbers are asserted where it prints them (autograd 0.0852 / -0.0898 /
-0.0817, 2,213 parameters, accuracy 1.0 / 1.0 on the toy data); each cell's second run
prints what its first printed, or (saving again into the same step) one jaxnet line.
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, run_python

CELLS = r'''
# %% tensors and dtypes
import jax
import jax.numpy as jnp
import numpy as np

tensor0d = jnp.array(1)
tensor1d = jnp.array([1, 2, 3])
tensor2d = jnp.array([[1, 2, 3], [4, 5, 6]])
print("dtypes", tensor1d.dtype, jnp.array([1.0, 2.0, 3.0]).dtype)
print("shape", tensor2d.shape, tensor2d.reshape(3, 2).shape, tensor2d.T.shape)
print("matmul", (tensor2d @ tensor2d.T).tolist())

# %% autograd on the logistic graph
from jaxnet import losses

y = jnp.array([1.0])
x1 = jnp.array([1.1])
w1 = jnp.array([2.2])
b = jnp.array([0.0])


def loss_fn(w1, b):
    z = x1 * w1 + b
    a = jax.nn.sigmoid(z)
    return losses.binary_cross_entropy(a, y)


loss = loss_fn(w1, b)
grad_L_w1, grad_L_b = jax.grad(loss_fn, argnums=(0, 1))(w1, b)
print(f"loss {float(loss):.4f} grad_w1 {float(grad_L_w1[0]):.4f} grad_b {float(grad_L_b[0]):.4f}")

# %% NeuralNetwork 50-30-20-3 with forward
from jaxnet import nn


class NeuralNetwork(nn.Module):
    def __init__(self, num_inputs, num_outputs, *, rngs):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(num_inputs, 30, rngs=rngs),
            nn.ReLU(),
            nn.Linear(30, 20, rngs=rngs),
            nn.ReLU(),
            nn.Linear(20, num_outputs, rngs=rngs),
        )

    def forward(self, x):
        logits = self.layers(x)
        return logits


model = NeuralNetwork(50, 3, rngs=nn.Rngs(123))
print(model)
num_params = nn.count_params(model)
print("Total number of trainable model parameters:", num_params)
print("weight", model.layers[0].weight.shape)
X = jax.random.uniform(jax.random.key(123), (1, 50))
out = model(X)
print("out", out.shape, "softmax sums to", float(jax.nn.softmax(out, axis=1).sum()))

# %% ToyDataset(Dataset) + DataLoader
from jaxnet.data import DataLoader, Dataset

X_train = np.array([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]],
                   np.float32)
y_train = np.array([0, 0, 0, 1, 1])
X_test = np.array([[-0.8, 2.8], [2.6, -1.6]], np.float32)
y_test = np.array([0, 1])


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


train_ds = ToyDataset(X_train, y_train)
test_ds = ToyDataset(X_test, y_test)
train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0,
                          drop_last=True, seed=123)
test_loader = DataLoader(test_ds, batch_size=2, shuffle=False, num_workers=0)
for idx, (x, y) in enumerate(train_loader):
    print(f"Batch {idx + 1}:", x.shape, y.tolist())

# %% training loop with per-batch logs via a callback
import optax

import jaxnet.nn.functional as F
from jaxnet.callbacks import Callback
from jaxnet.train import TrainState, fit

num_epochs = 3


class BatchLog(Callback):
    def on_epoch_begin(self, run, epoch, state):
        self.epoch = epoch

    def on_batch_end(self, run, batch_idx, loss):
        print(f"Epoch: {self.epoch:03d}/{num_epochs:03d}"
              f" | Batch {batch_idx:03d}/{len(run.loader):03d}"
              f" | Train Loss: {float(loss):.2f}")


model = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(123))
optimizer = optax.sgd(learning_rate=0.5)
apply, params, model_state = nn.split(model)
state = TrainState.create(params, optimizer, model_state=model_state, seed=123)
state, history = fit(state, apply, F.cross_entropy, optimizer, train_loader,
                     epochs=num_epochs, callbacks=[BatchLog()], progress=False, log=None)
print("trained steps", int(state.step))

# %% compute_accuracy
def compute_accuracy(model, dataloader):
    correct = 0.0
    total_examples = 0
    for idx, (features, labels) in enumerate(dataloader):
        logits = model(features)
        predictions = jnp.argmax(logits, axis=1)
        compare = labels == predictions
        correct += jnp.sum(compare)
        total_examples += len(compare)
    return (correct / total_examples).item()


print("train acc", compute_accuracy(model, train_loader))
print("test acc", compute_accuracy(model, test_loader))

# %% save and load the TRAINED model
from jaxnet import checkpoint

checkpoint.save("model", nn.state_dict(model), step=1)
model2 = NeuralNetwork(2, 2, rngs=nn.Rngs(0))
nn.load_state_dict(model2, checkpoint.restore("model", like=nn.state_dict(model2)))
print("reloaded predictions", jnp.argmax(model2(X_test), axis=1).tolist(),
      "equal", bool(jnp.array_equal(model2(X_test), model(X_test))))

# %% the make_train_step loop (the course's loop, by hand)
from jaxnet.train import make_train_step

model = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(123))
apply, params, model_state = nn.split(model)
state = TrainState.create(params, optimizer, model_state=model_state, seed=123)
train_step = make_train_step(apply, F.cross_entropy, optimizer)
for epoch in range(num_epochs):
    for batch_idx, (features, labels) in enumerate(train_loader.iter_epoch(epoch)):
        state, metrics = train_step(state, (features, labels))
nn.update(model, state)
print("loop train acc", compute_accuracy(model, train_loader))

# %% MyModel + nn.MSELoss() + SGD momentum, train/val/test with eval
from jaxnet.data import ArrayDataset, random_split
from jaxnet.train import evaluate

rng = np.random.default_rng(0)
xs = rng.normal(size=(300, 10)).astype(np.float32)
ys = np.sin(xs @ (np.ones(10, np.float32) / 3))[:, None].astype(np.float32)
train_set, val_set, test_set = random_split(ArrayDataset(xs, ys), [0.7, 0.15, 0.15], seed=0)


class MyModel(nn.Module):
    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(10, 32, rngs=rngs)
        self.act = nn.Sigmoid()
        self.fc2 = nn.Linear(32, 1, rngs=rngs)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


my_model = MyModel(rngs=nn.Rngs(0))
criterion = nn.MSELoss()
optimizer = optax.sgd(0.05, momentum=0.9)
apply, params, model_state = nn.split(my_model)
state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
state, history = fit(state, apply, criterion, optimizer, train_set, epochs=5, batch_size=16,
                     val_data=val_set, progress=False, log=None)
test = evaluate(apply, state, test_set, loss_fn=criterion)
print("val_loss", round(history[-1]["val_loss"], 4), "test", sorted(test))

# %% Sequential + LogSoftmax(dim=1) + nn.NLLLoss() + Adam + sklearn accuracy
from sklearn.metrics import accuracy_score

xb = rng.normal(size=(200, 4)).astype(np.float32)
yb = (xb[:, 0] > 0).astype(np.int64)
seq = nn.Sequential(nn.Linear(4, 16, rngs=nn.Rngs(1)), nn.ReLU(),
                    nn.Linear(16, 2, rngs=nn.Rngs(2)), nn.LogSoftmax(dim=1))
criterion = nn.NLLLoss()
optimizer = optax.adam(0.01)
apply, params, model_state = nn.split(seq)
state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
state, _ = fit(state, apply, criterion, optimizer, (xb, yb), epochs=5, batch_size=16,
               progress=False, log=None)
pred = np.asarray(jnp.argmax(seq(xb), axis=1))
print("sklearn accuracy", accuracy_score(yb, pred))

# %% a learning rate changed by a callback (PyTorch's scheduler habit)
from jaxnet import optim


class LowerRate(Callback):
    def on_epoch_begin(self, run, epoch, state):
        if epoch == 3:
            return optim.set_learning_rate(state, 0.05)


model = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(123))
optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
apply, params, model_state = nn.split(model)
state = TrainState.create(params, optimizer, model_state=model_state, seed=123)
state, history = fit(state, apply, F.cross_entropy, optimizer, train_loader,
                     epochs=num_epochs, callbacks=[LowerRate()], progress=False, log=None)
print("rate after", optim.learning_rate(state))

# %% freezing the PyTorch way is refused, naming the jaxnet way
model = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(123))
apply, params, model_state = nn.split(model)
state = TrainState.create(params, optimizer, model_state=model_state, seed=123)
model.layers[0].weight.requires_grad = False  # after nn.split: fit still sees it
try:
    fit(state, apply, F.cross_entropy, optimizer, train_loader, epochs=num_epochs,
        progress=False, log=None)
except TypeError as e:
    print("refused:", str(e)[:60])

# %% the course's MNISTNet (examples/mnist_course.py) on a slice of MNIST
import runpy

from jaxnet import datasets

MNISTNet = runpy.run_path(MNIST_COURSE)["MNISTNet"]
images, labels = datasets.load_mnist("train")
test_images, test_labels = datasets.load_mnist("test")
x = (datasets.to_float(images[:3000], mean=0.0, std=1.0) - 0.5) / 0.5
x_test = (datasets.to_float(test_images[:1000], mean=0.0, std=1.0) - 0.5) / 0.5
model = MNISTNet(rngs=nn.Rngs(0))
criterion = nn.NLLLoss()
optimizer = optax.adam(0.01)
apply, params, model_state = nn.split(model)
state = TrainState.create(params, optimizer, model_state=model_state, seed=0)
state, history = fit(state, apply, criterion, optimizer, ArrayDataset(x, labels[:3000]),
                     epochs=1, batch_size=64, shuffle=True, seed=0, progress=False, log=None)
predicted = jnp.argmax(model(x_test), axis=1)
print(f"mnist accuracy: {int((predicted == test_labels[:1000]).sum()) / 1000:.4f}")
'''

# Runs each "# %%" cell twice in one namespace; an exception prints as one "!!!" line (the
# session goes on, as a notebook does), its traceback's last lines on stderr.
DRIVER = r'''
import sys, traceback
source = open(sys.argv[1]).read()
ns = {"__name__": "__main__", "MNIST_COURSE": sys.argv[2]}
for cell in ["# %%" + c for c in source.split("# %%")[1:]]:
    title = cell.splitlines()[0][5:]
    for run in (1, 2):
        print(f"=== [{run}] {title}", flush=True)
        try:
            exec(compile(cell, f"<cell {title} run {run}>", "exec"), ns)
        except Exception as e:
            print(f"!!! {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            print("".join(traceback.format_exception(e)[-3:]), file=sys.stderr)
'''


@pytest.fixture(scope="module")
def session(tmp_path_factory, mnist_path):
    folder = tmp_path_factory.mktemp("learner")
    (folder / "course.py").write_text(CELLS)
    (folder / "driver.py").write_text(DRIVER)
    proc = run_python("driver.py", "course.py", str(ROOT / "examples" / "mnist_course.py"),
                      cwd=folder, env={"JAXNET_DATA_DIR": str(mnist_path)}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs: dict[tuple[str, int], str] = {}
    for block in re.split(r"(?m)^=== ", proc.stdout)[1:]:
        head, _, body = block.partition("\n")
        run, title = re.fullmatch(r"\[(\d)\] (.*)", head).groups()
        runs[(title, int(run))] = body
    return runs, proc.stderr, folder


def cell(session, title):
    runs = session[0]
    return runs[(title, 1)], runs[(title, 2)]


def test_every_cell_ran_twice_and_only_the_expected_one_raised(session):
    runs, stderr, _ = session
    titles = [c.splitlines()[0][5:] for c in ["# %%" + c for c in CELLS.split("# %%")[1:]]]
    assert sorted(runs) == sorted((t, r) for t in titles for r in (1, 2))
    raised = {key: body for key, body in runs.items() if "!!!" in body}
    assert list(raised) == [("save and load the TRAINED model", 2)], raised
    for text in ("Buffer has been deleted", "Exception ignored", "common_pjrt_client",
                 "Array has been deleted"):
        assert text not in stderr


def test_the_course_numbers(session):
    for out in cell(session, "tensors and dtypes"):
        assert "dtypes int32 float32" in out and "matmul [[14, 32], [32, 77]]" in out
    for out in cell(session, "autograd on the logistic graph"):
        assert "loss 0.0852 grad_w1 -0.0898 grad_b -0.0817" in out
    for out in cell(session, "NeuralNetwork 50-30-20-3 with forward"):
        assert "Total number of trainable model parameters: 2213" in out
        assert "(0): Linear(in_features=50, out_features=30, bias=True)" in out
        assert "weight (30, 50)" in out
    for out in cell(session, "compute_accuracy"):
        assert "train acc 1.0\ntest acc 1.0" in out
    assert "loop train acc 1.0" in cell(session, "the make_train_step loop (the course's loop, "
                                                 "by hand)")[1]


def test_a_rerun_cell_prints_what_it_printed(session):
    """Same seeds, same numbers: the re-run of a training cell starts over, bit for bit."""
    for title in ("ToyDataset(Dataset) + DataLoader", "training loop with per-batch logs via "
                  "a callback", "MyModel + nn.MSELoss() + SGD momentum, train/val/test with eval",
                  "Sequential + LogSoftmax(dim=1) + nn.NLLLoss() + Adam + sklearn accuracy",
                  "the course's MNISTNet (examples/mnist_course.py) on a slice of MNIST"):
        first, second = cell(session, title)
        assert first == second, title
    first, _ = cell(session, "training loop with per-batch logs via a callback")
    batches = re.findall(r"Epoch: 00(\d)/003 \| Batch 00(\d)/002 \| Train Loss: ", first)
    assert batches == [(e, b) for e in "123" for b in "01"]  # every batch, on the scan path too


def test_saving_again_is_one_jaxnet_line_and_the_trained_model_reloads(session):
    first, second = cell(session, "save and load the TRAINED model")
    assert "reloaded predictions [0, 1] equal True" in first
    assert second.startswith("!!! CheckpointExistsError: checkpoint model/step_00000001 "
                             "already exists; refusing to overwrite it")
    assert (session[2] / "model" / "step_00000001").is_dir()  # relative to the session's cwd


def test_the_scenes_beyond_the_toy(session):
    for out in cell(session, "a learning rate changed by a callback (PyTorch's scheduler "
                             "habit)"):
        assert "rate after 0.05" in out
    for out in cell(session, "freezing the PyTorch way is refused, naming the jaxnet way"):
        assert "refused: layers.0.weight.requires_grad: jaxnet has no requires_grad" in out
    for out in cell(session, "Sequential + LogSoftmax(dim=1) + nn.NLLLoss() + Adam + sklearn "
                             "accuracy"):
        assert float(re.search(r"sklearn accuracy ([\d.]+)", out).group(1)) >= 0.9
    out, _ = cell(session, "the course's MNISTNet (examples/mnist_course.py) on a slice of "
                           "MNIST")
    assert float(re.search(r"mnist accuracy: ([\d.]+)", out).group(1)) > 0.7  # 0.7610
