"""The MyModel scene: Linear(10,32) -> Sigmoid -> Linear(32,1), MSE, SGD with momentum.

Separate train, validation and test loops, written out like the course; the
checkpoint with the best validation loss is kept and its test loss reported.
Checkpoints are never overwritten: each epoch's goes into its own step folder.

Run:  python examples/regression.py [--out-dir DIR]
"""

import argparse
import tempfile

import jax
import numpy as np
import optax

from jaxnet import checkpoint, losses, nn
from jaxnet.data import ArrayDataset, DataLoader, random_split
from jaxnet.train import TrainState, make_train_step


def make_data(seed: int, n: int = 1000):
    """y = sin(x @ w) + noise: a smooth target a 32-unit sigmoid layer can fit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    w = rng.normal(size=(10,)).astype(np.float32) / np.sqrt(10)
    y = (np.sin(x @ w) + 0.1 * rng.normal(size=n)).astype(np.float32)[:, None]
    return ArrayDataset(x, y)


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
    model = nn.Sequential(nn.Linear(10, 32, rngs=args.seed), jax.nn.sigmoid,
                          nn.Linear(32, 1, rngs=args.seed + 1))
    apply, params = nn.functional(model)
    optimizer = optax.sgd(args.lr, momentum=args.momentum)
    state = TrainState.create(params, optimizer, seed=args.seed)
    train_step = make_train_step(apply, losses.mse_loss, optimizer)

    @jax.jit
    def eval_step(params, x, y, mask):  # no gradients: the torch.no_grad() loop
        return losses.mse_loss(apply(params, x), y, mask=mask, reduction="sum"), mask.sum()

    def mean_loss(params, dataset):
        total = count = 0.0
        for x, y, mask in DataLoader(dataset, batch_size=args.batch_size, pad_last=True):
            s, n = eval_step(params, x, y, mask)
            total, count = total + float(s), count + float(n)
        return total / count

    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                        pad_last=True)
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="jaxnet-regression-")
    best_epoch, best_val = None, float("inf")
    for epoch in range(1, args.epochs + 1):
        for x, y, mask in loader.iter_epoch(epoch):  # train loop
            state, _ = train_step(state, (x, y, mask))
        train_loss = mean_loss(state.params, train_set)
        val_loss = mean_loss(state.params, val_set)  # validation loop
        improved = val_loss < best_val
        if improved:
            best_epoch, best_val = epoch, val_loss
            checkpoint.save(out_dir, state.params, step=epoch, keep=1)
        print(f"epoch {epoch:2d}  train_loss {train_loss:.4f}  val_loss {val_loss:.4f}"
              f"{'  (best, saved)' if improved else ''}")

    best = checkpoint.restore(out_dir, like=state.params, step=best_epoch)
    test_loss = mean_loss(best, test_set)  # test loop, on the best checkpoint
    print(f"best epoch: {best_epoch}  best val_loss: {best_val:.4f}")
    print(f"test loss of the best checkpoint: {test_loss:.4f}")
    print(f"checkpoint: {out_dir}")


if __name__ == "__main__":
    main()
