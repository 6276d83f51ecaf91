"""The toy-dataset scene: the course's own Dataset, DataLoader, model, training loop and save.

The code is the course's, line for line where JAX allows it: a ``ToyDataset``
subclass with a per-item ``__getitem__``, ``DataLoader(batch_size=2,
shuffle=True, drop_last=True)``, ``NeuralNetwork(2, 2)`` as a subclass of
``nn.Module``, SGD with lr 0.5, 3 epochs with a log line per batch,
``compute_accuracy`` on train and test, then ``torch.save(state_dict)`` and a
reload into a fresh model.

What changes, and why:

* ``torch.manual_seed(123)`` becomes ``rngs=nn.Rngs(123)`` for the model and
  ``seed=123`` for the loader's shuffle: randomness is an argument.
* ``zero_grad(); loss.backward(); optimizer.step()`` becomes one jitted
  ``train_step(state, batch)``: gradients are a value, not stored on tensors.
* ``model.eval()`` + ``torch.no_grad()`` becomes ``apply(..., train=False)``;
  no gradient is computed unless asked.

Run:  python examples/toy_dataset.py [--seed 123] [--out-dir DIR]
"""

import argparse
import tempfile

import jax.numpy as jnp
import numpy as np
import optax

from jaxnet import checkpoint, losses, nn
from jaxnet.data import DataLoader, Dataset
from jaxnet.train import TrainState, make_train_step

# The course's data: two well-separated classes in 2-D.
X_train = np.array([
    [-1.2, 3.1],
    [-0.9, 2.9],
    [-0.5, 2.6],
    [2.3, -1.1],
    [2.7, -1.5],
], dtype=np.float32)
y_train = np.array([0, 0, 0, 1, 1], dtype=np.int32)

X_test = np.array([
    [-0.8, 2.8],
    [2.6, -1.6],
], dtype=np.float32)
y_test = np.array([0, 1], dtype=np.int32)


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
    def __init__(self, num_inputs, num_outputs, *, rngs):
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

    def __call__(self, x):  # PyTorch's forward
        logits = self.layers(x)
        return logits


def compute_accuracy(apply, params, model_state, dataloader):
    """The fraction of examples whose argmax prediction equals the label (eval mode)."""
    correct = 0
    total_examples = 0
    for features, labels in dataloader:
        logits, _ = apply(params, model_state, features, train=False)  # model.eval()
        predictions = jnp.argmax(logits, axis=1)
        compare = labels == predictions
        correct += int(jnp.sum(compare))
        total_examples += len(compare)
    return correct / total_examples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=123,
                        help="seed of the model's initial values and of the shuffle (123)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--out-dir", default=None,
                        help="where to save the model (default: a new temporary folder)")
    args = parser.parse_args(argv)

    train_ds = ToyDataset(X_train, y_train)
    test_ds = ToyDataset(X_test, y_test)
    print(f"len(train_ds) = {len(train_ds)}, train_ds[0] = {train_ds[0]}")

    train_loader = DataLoader(
        dataset=train_ds,
        batch_size=2,
        shuffle=True,
        num_workers=0,
        drop_last=True,
        seed=args.seed,
    )
    test_loader = DataLoader(
        dataset=test_ds,
        batch_size=2,
        shuffle=False,
        num_workers=0,
    )

    model = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(args.seed))
    apply, params, model_state = nn.split(model)
    optimizer = optax.sgd(learning_rate=args.lr)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=args.seed)
    # model.train(); zero_grad(); loss = F.cross_entropy(...); backward(); step(), jitted:
    train_step = make_train_step(apply, losses.cross_entropy, optimizer)

    num_epochs = args.epochs
    for epoch in range(num_epochs):
        for batch_idx, (features, labels) in enumerate(train_loader):
            state, metrics = train_step(state, (features, labels))
            ### LOGGING
            print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d}"
                  f" | Batch {batch_idx:03d}/{len(train_loader):03d}"
                  f" | Train Loss: {float(metrics['loss']):.2f}")

    params, model_state = state.params, state.model_state
    logits, _ = apply(params, model_state, X_train)
    print("train logits:\n", np.asarray(logits).round(4))
    print("train predictions:", np.asarray(jnp.argmax(logits, axis=1)).tolist())
    print(f"train accuracy: {compute_accuracy(apply, params, model_state, train_loader)}")
    print(f"test accuracy: {compute_accuracy(apply, params, model_state, test_loader)}")

    # The loop trained `state`, not the model object (PyTorch trains the model in
    # place): put the trained state into `model` first. Without this line,
    # nn.state_dict(model) raises nn.StaleModelError (fit does it for you).
    nn.update(model, state)

    # torch.save(model.state_dict(), "model.pth"), without pickle: the trained
    # parameters are arrays, saved with a manifest of their digests.
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="jaxnet-toy-")
    path = checkpoint.save(out_dir, nn.state_dict(model), step=num_epochs)
    print(f"saved to {path}")

    # model = NeuralNetwork(2, 2); model.load_state_dict(torch.load("model.pth"))
    # The fresh model starts from other random values; the checkpoint replaces them.
    fresh = NeuralNetwork(num_inputs=2, num_outputs=2, rngs=nn.Rngs(args.seed + 1))
    nn.load_state_dict(fresh, checkpoint.restore(out_dir, like=nn.state_dict(fresh)))
    test_logits = model(X_test)  # the trained model
    reloaded_logits = fresh(X_test)  # the loaded model called directly, like model(X_test)
    same = bool(np.array_equal(np.asarray(reloaded_logits), np.asarray(test_logits)))
    print("test predictions:", np.asarray(jnp.argmax(reloaded_logits, axis=1)).tolist())
    print(f"reloaded model gives identical predictions: {same}")


if __name__ == "__main__":
    main()
