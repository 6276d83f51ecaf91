"""The computation-graph scene: logistic regression on one sample, gradients by jax.grad.

In PyTorch: ``w1 = torch.tensor(2.2, requires_grad=True)``, ``loss.backward()``,
``w1.grad``. In JAX the loss is a pure function of its inputs and ``jax.grad``
returns the derivatives; nothing is stored on the tensors.

Run:  python examples/autograd_logistic.py
"""

import argparse

import jax
import jax.numpy as jnp

from jaxnet import losses


def loss_fn(w1, b, x1, y):
    """z = x1 * w1 + b,  a = sigmoid(z),  L = binary cross-entropy(a, y)."""
    a = jax.nn.sigmoid(x1 * w1 + b)
    return losses.binary_cross_entropy(a, y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x1", type=float, default=1.1)
    parser.add_argument("--w1", type=float, default=2.2)
    parser.add_argument("--b", type=float, default=0.0)
    parser.add_argument("--y", type=float, default=1.0)
    args = parser.parse_args(argv)

    x1, y = jnp.float32(args.x1), jnp.float32(args.y)
    w1, b = jnp.float32(args.w1), jnp.float32(args.b)
    # value_and_grad: the loss and dL/dw1, dL/db in one pass (argnums picks the inputs).
    loss, (dw1, db) = jax.value_and_grad(loss_fn, argnums=(0, 1))(w1, b, x1, y)
    print(f"a = sigmoid(x1*w1 + b) = {float(jax.nn.sigmoid(x1 * w1 + b)):.4f}")
    print(f"loss = {float(loss):.4f}")
    print(f"dL/dw1 = {float(dw1):.4f}")
    print(f"dL/db = {float(db):.4f}")


if __name__ == "__main__":
    main()
