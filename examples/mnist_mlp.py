"""The MNIST case study, the jaxnet way: load, normalise, MLP, Adam, 5 epochs, test accuracy.

The course's steps are all here and in the same order; ``jaxnet train mnist``
runs the same thing with more options (see jaxnet/mnist.py).

Run:  python examples/mnist_mlp.py [--data-dir ../shared/data/mnist] [--epochs 5]
"""

import argparse

import optax

from jaxnet import datasets, losses, metrics, nn
from jaxnet.train import TrainState, fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST IDX files (default: $JAXNET_DATA_DIR)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # 1. Data: ToTensor() + Normalize((0.5,), (0.5,)) + view(-1, 784)
    images, labels = datasets.load_mnist("train", args.data_dir)
    test_images, test_labels = datasets.load_mnist("test", args.data_dir)
    x = datasets.to_float(images, flatten=True)
    x_test = datasets.to_float(test_images, flatten=True)
    print(f"train {x.shape}, test {x_test.shape}")

    # 2. Model: 784-512-256-10 with ReLU, as in the course.
    model = nn.MLP(784, [512, 256], 10, rngs=args.seed)
    nn.summary(model, (args.batch_size, 784))
    apply, params = nn.functional(model)

    # 3. Loss and optimizer: cross-entropy on logits (= log-softmax + NLL), Adam.
    optimizer = optax.adam(args.lr)
    state = TrainState.create(params, optimizer, seed=args.seed)

    # 4. Train, validating on the test set after every epoch.
    state, history = fit(state, apply, losses.cross_entropy, optimizer, (x, labels),
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         val_data=(x_test, test_labels))

    # 5. Test: accuracy and per-class scores.
    logits = apply(state.params, x_test)
    precision, recall, f1 = metrics.precision_recall_f1(test_labels, logits, num_classes=10)
    print(f"test accuracy: {float(metrics.accuracy(test_labels, logits)):.4f}")
    print(f"macro precision {float(precision):.4f}  recall {float(recall):.4f}  "
          f"f1 {float(f1):.4f}")


if __name__ == "__main__":
    main()
