"""The custom-module scene: the course's NeuralNetwork(50, 3), its layers, parameters and outputs.

The course subclasses ``torch.nn.Module``; here it is ``jaxnet.nn.Module``
(Flax NNX) with the same ``Sequential(Linear, ReLU, …)`` body. Differences:
``__init__`` takes ``rngs`` (the course's ``torch.manual_seed``, as an
argument), ``__call__`` is PyTorch's ``forward``, and ``weight`` is PyTorch's
``(out_features, in_features)`` view of the layer's ``kernel``.

Run:  python examples/custom_module.py [--seed 123]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxnet import nn


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=123,
                        help="seed of the initial values and of the random input (123)")
    args = parser.parse_args(argv)
    np.set_printoptions(precision=4, suppress=True)

    model = NeuralNetwork(50, 3, rngs=nn.Rngs(args.seed))
    # print(model): the nested layers with their output shapes and parameter counts
    # (torchinfo's table; shapes are computed abstractly, nothing runs).
    nn.summary(model, input_shape=(1, 50))

    # sum(p.numel() for p in model.parameters() if p.requires_grad): the trainable
    # parameters are exactly what nn.split returns as params.
    apply, params, model_state = nn.split(model)
    num_params = sum(p.size for p in jax.tree.leaves(params))
    print("Total number of trainable model parameters:", num_params)
    assert num_params == nn.count_params(model)

    first = model.layers[0]
    print("model.layers[0]:", repr(first))
    print("model.layers[0].weight.shape:", first.weight.shape)  # PyTorch layout (out, in)
    print("model.layers[0].kernel.shape:", first.kernel.shape)  # JAX layout (in, out)
    print("model.layers[0].weight[:2, :5]:\n", np.asarray(first.weight[:2, :5]))
    print("model.layers[0].bias.shape:", first.bias.shape)

    # X = torch.rand((1, 50)): a key instead of the global seed.
    X = jax.random.uniform(jax.random.key(args.seed), (1, 50))
    out = model(X)  # the model called directly, like model(X)
    print("logits:", np.asarray(out))

    # with torch.no_grad(): nothing to switch off, JAX computes no gradient unless asked.
    # The pure function gives the same outputs; train=False is model.eval().
    out_pure, _ = apply(params, model_state, X, train=False)
    print("same through nn.split:", bool(jnp.allclose(out, out_pure)))

    probas = jax.nn.softmax(out, axis=1)  # torch.softmax(model(X), dim=1)
    print("class-membership probabilities:", np.asarray(probas))
    print("nn.Softmax(dim=1) gives the same:", bool(jnp.allclose(nn.Softmax(dim=1)(out), probas)))
    print("predicted class (argmax):", np.asarray(jnp.argmax(probas, axis=1)).tolist())

    # A batch of 4: one prediction per row.
    X4 = jax.random.uniform(jax.random.key(args.seed + 1), (4, 50))
    print("batch of 4, predictions:", np.asarray(jnp.argmax(model(X4), axis=1)).tolist())


if __name__ == "__main__":
    main()
