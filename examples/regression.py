"""The MyModel scene: Linear(10, 32) -> Sigmoid -> Linear(32, 1), MSE, SGD with momentum.

Train, validation and test are three different sets. ``fit`` runs the train
loop and, after every epoch, the validation loop; a small callback of our own
(``SaveBest``) keeps the checkpoint with the best validation loss, and the test
loop runs once, on that checkpoint. Checkpoints are never overwritten: each
improvement goes into its own step folder and the older one is pruned.

Run:  python examples/regression.py [--out-dir DIR]
"""

import argparse
import tempfile

import numpy as np
import optax

from jaxnet import checkpoint, losses, nn
from jaxnet.callbacks import Callback
from jaxnet.data import ArrayDataset, DataLoader, random_split
from jaxnet.train import TrainState, evaluate, fit


def make_data(seed: int, n: int = 1000):
    """y = sin(x @ w) + noise: a smooth target a 32-unit sigmoid layer can fit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    w = rng.normal(size=(10,)).astype(np.float32) / np.sqrt(10)
    y = (np.sin(x @ w) + 0.1 * rng.normal(size=n)).astype(np.float32)[:, None]
    return ArrayDataset(x, y)


class MyModel(nn.Module):
    def __init__(self, *, rngs):
        self.fc1 = nn.Linear(10, 32, rngs=rngs)
        self.act = nn.Sigmoid()
        self.fc2 = nn.Linear(32, 1, rngs=rngs)

    def __call__(self, x):  # PyTorch's forward
        return self.fc2(self.act(self.fc1(x)))


class SaveBest(Callback):
    """Save the parameters whenever the validation loss improves (keep only the best).

    ``on_epoch_end`` runs after ``fit``'s validation, so ``logs`` has ``val_loss``.
    The state is consumed by the next epoch (its buffers are donated): save it
    now, or keep a copy (``jax.tree.map(jnp.copy, state.params)``), never a reference.
    """

    def __init__(self, directory):
        self.directory = directory
        self.best_epoch, self.best_val = None, float("inf")

    def on_epoch_end(self, run, epoch, state, logs):
        improved = logs["val_loss"] < self.best_val
        if improved:
            self.best_epoch, self.best_val = epoch, logs["val_loss"]
            checkpoint.save(self.directory, state.params, step=epoch, keep=1)
        print(f"epoch {epoch:2d}  train_loss {logs['train_loss']:.4f}  "
              f"val_loss {logs['val_loss']:.4f}{'  (best, saved)' if improved else ''}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None,
                        help="checkpoint folder (default: a new temporary folder)")
    args = parser.parse_args(argv)

    train_set, val_set, test_set = random_split(make_data(args.seed), [700, 150, 150],
                                                seed=args.seed)
    model = MyModel(rngs=nn.Rngs(args.seed))
    apply, params, model_state = nn.split(model)
    optimizer = optax.sgd(args.lr, momentum=args.momentum)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=args.seed)

    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                              seed=args.seed)
    val_loader = DataLoader(val_set, batch_size=args.batch_size)
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="jaxnet-regression-")
    save_best = SaveBest(out_dir)
    # Train loop + validation loop; SaveBest prints one line per epoch instead of fit.
    state, history = fit(state, apply, losses.mse_loss, optimizer, train_loader,
                         epochs=args.epochs, val_data=val_loader, callbacks=[save_best],
                         progress=False, log=None)

    # Test loop, once, on the best checkpoint (evaluation mode, no gradients).
    best = checkpoint.restore(out_dir, like=state.params, step=save_best.best_epoch)
    test = evaluate(apply, best, DataLoader(test_set, batch_size=args.batch_size),
                    model_state=state.model_state, loss_fn=losses.mse_loss)
    print(f"best epoch: {save_best.best_epoch}  best val_loss: {save_best.best_val:.4f}")
    print(f"test loss of the best checkpoint: {test['loss']:.4f}")
    print(f"checkpoint: {out_dir}")


if __name__ == "__main__":
    main()
