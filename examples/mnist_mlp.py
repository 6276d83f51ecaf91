"""The MNIST case study, the jaxnet way: load, normalise, MLP, Adam, 5 epochs, test accuracy.

The course's steps are all here and in the same order; ``jaxnet train mnist``
runs the same thing with more options (see jaxnet/mnist.py). Train,
validation and test are three different sets: a seeded validation split is
held out of the 60,000 training images and reported after every epoch; the
test set is used once, at the end.

Run:  python examples/mnist_mlp.py [--data-dir ../shared/data/mnist] [--epochs 5]
"""

import argparse

import optax

from jaxnet import datasets, losses, metrics, nn
from jaxnet.data import ArrayDataset, random_split
from jaxnet.train import TrainState, fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST IDX files (default: $JAXNET_DATA_DIR)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-split", type=int, default=5000,
                        help="training images held out for validation (5000)")
    args = parser.parse_args(argv)

    # 1. Data: ToTensor() + Normalize((0.5,), (0.5,)) + view(-1, 784)
    images, labels = datasets.load_mnist("train", args.data_dir)
    test_images, test_labels = datasets.load_mnist("test", args.data_dir)
    x = datasets.to_float(images, flatten=True)
    x_test = datasets.to_float(test_images, flatten=True)
    n_train = len(x) - args.val_split
    train_set, val_set = random_split(ArrayDataset(x, labels), [n_train, args.val_split],
                                      seed=args.seed)
    print(f"train {len(train_set)}, validation {len(val_set)}, test {len(x_test)} images")

    # 2. Model: 784-512-256-10 with ReLU, as in the course.
    model = nn.MLP(784, [512, 256], 10, rngs=args.seed)
    nn.summary(model, (args.batch_size, 784))
    apply, params, model_state = nn.split(model)

    # 3. Loss and optimizer: cross-entropy on logits (= log-softmax + NLL), Adam.
    optimizer = optax.adam(args.lr)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=args.seed)

    # 4. Train, validating after every epoch (one compiled scan per epoch).
    state, history = fit(state, apply, losses.cross_entropy, optimizer, train_set,
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         val_data=val_set)

    # 5. Test, once: accuracy and per-class scores, in evaluation mode.
    logits, _ = apply(state.params, state.model_state, x_test, train=False)
    precision, recall, f1 = metrics.precision_recall_f1(test_labels, logits, num_classes=10)
    print(f"test accuracy: {float(metrics.accuracy(test_labels, logits)):.4f}")
    print(f"macro precision {float(precision):.4f}  recall {float(recall):.4f}  "
          f"f1 {float(f1):.4f}")


if __name__ == "__main__":
    main()
