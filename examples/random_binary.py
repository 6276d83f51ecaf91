"""Random binary classification: an 80/20 split, log-softmax + NLL, Adam, 5 epochs with fit.

The labels are random coin flips, independent of the features, so the model
cannot generalise: test accuracy near 0.5 is the expected, correct outcome.

Run:  python examples/random_binary.py
"""

import argparse

import numpy as np
import optax

from jaxnet import losses, nn
from jaxnet.data import ArrayDataset, random_split
from jaxnet.train import TrainState, evaluate, fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(100, 10)).astype(np.float32)
    y = rng.integers(0, 2, size=100).astype(np.int32)
    train_set, test_set = random_split(ArrayDataset(x, y), [80, 20], seed=args.seed)
    print(f"train {len(train_set)} examples, test {len(test_set)} examples")

    # The course's model ends in LogSoftmax and trains with NLLLoss.
    model = nn.MLP(10, [16], 2, output_activation="log_softmax", rngs=args.seed)
    apply, params, model_state = nn.split(model)
    optimizer = optax.adam(args.lr)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=args.seed)
    state, history = fit(state, apply, losses.nll_loss, optimizer, train_set,
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         progress=False)
    # evaluate runs the model in evaluation mode (model.eval() + torch.no_grad()).
    test = evaluate(apply, state, test_set, loss_fn=losses.nll_loss)
    print(f"test loss: {test['loss']:.4f}")
    print(f"test accuracy: {test['accuracy']:.4f}")
    print("note: the labels are random, so a test accuracy near 0.5 is expected")


if __name__ == "__main__":
    main()
