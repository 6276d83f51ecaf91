"""Flax NNX in its MNIST tutorial's idiom: ``nnx.Optimizer`` and an ``@nnx.jit`` train step.

The step takes the model and the optimizer (mutated in place by
``optimizer.update``), a host loop feeds it numpy batches in jaxnet's order.
Unlike the tutorial it keeps no ``nnx.MultiMetric`` of training accuracy
(no other peer computes one). Layers: ``nnx.Linear`` with PyTorch's
initialisation; loss: ``optax.softmax_cross_entropy_with_integer_labels``
(= log-softmax + NLL).

Run:  python benchmarks/peers/nnx_jit.py [--quick] [--epochs 5] [--batch-size 64]
"""

from __future__ import annotations

import time

import _common


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import flax
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    _common.emit(versions={"flax": flax.__version__, "jax": jax.__version__})

    def torch_uniform(fan_in):
        bound = _common.torch_bound(fan_in)
        return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
            key, shape, dtype, -bound, bound)

    def linear(fan_in, fan_out, rngs):
        return nnx.Linear(fan_in, fan_out, kernel_init=torch_uniform(fan_in),
                          bias_init=torch_uniform(fan_in), rngs=rngs)

    class MLP(nnx.Module):
        def __init__(self, hidden, *, rngs: nnx.Rngs):
            sizes = [784, *hidden]
            pairs = zip(sizes[:-1], sizes[1:], strict=True)
            self.hidden = nnx.List([linear(i, o, rngs) for i, o in pairs])
            self.out = linear(sizes[-1], 10, rngs)

        def __call__(self, x):
            for layer in self.hidden:
                x = nnx.relu(layer(x))
            return self.out(x)

    def loss_fn(model, x, y):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def predict(model, x):
        return model(x).argmax(axis=1)

    (x, y), (x_test, y_test) = _common.load_mnist(args.data_dir)
    model = MLP(args.hidden, rngs=nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for idx in _common.batches(len(x), args.batch_size, args.seed, epoch):
            train_step(model, optimizer, x[idx], y[idx])
        jax.block_until_ready(nnx.state(model))
        _common.emit(epoch=epoch + 1, seconds=time.perf_counter() - t0)
    accuracy = float((predict(model, x_test) == y_test).mean())
    _common.emit(test_accuracy=accuracy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
