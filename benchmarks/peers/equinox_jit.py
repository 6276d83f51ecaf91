"""Equinox in its MNIST example's idiom: an ``eqx.Module``, ``eqx.filter_jit`` ``make_step``.

The model maps one image (``jax.vmap`` makes the batch), the step returns the
new model and optimizer state, a host loop feeds it numpy batches in jaxnet's
order. ``eqx.nn.Linear``'s default initialisation is PyTorch's; the output is
log-softmax and the loss its NLL, as in the example and the course.

Run:  python benchmarks/peers/equinox_jit.py [--quick] [--epochs 5] [--batch-size 64]
"""

from __future__ import annotations

import time

import _common


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    _common.emit(versions={"equinox": eqx.__version__, "jax": jax.__version__})

    class MLP(eqx.Module):
        layers: list

        def __init__(self, hidden, key):
            sizes = [784, *hidden, 10]
            keys = jax.random.split(key, len(sizes) - 1)
            self.layers = [eqx.nn.Linear(i, o, key=k)
                           for i, o, k in zip(sizes[:-1], sizes[1:], keys, strict=True)]

        def __call__(self, x):  # one image (784,) -> log-probabilities (10,)
            for layer in self.layers[:-1]:
                x = jax.nn.relu(layer(x))
            return jax.nn.log_softmax(self.layers[-1](x))

    def loss(model, x, y):
        log_probs = jax.vmap(model)(x)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    optim = optax.adam(args.lr)

    @eqx.filter_jit
    def make_step(model, opt_state, x, y):
        loss_value, grads = eqx.filter_value_and_grad(loss)(model, x, y)
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return model, opt_state, loss_value

    @eqx.filter_jit
    def predict(model, x):
        return jax.vmap(model)(x).argmax(axis=1)

    (x, y), (x_test, y_test) = _common.load_mnist(args.data_dir)
    model = MLP(args.hidden, jax.random.key(args.seed))
    opt_state = optim.init(eqx.filter(model, eqx.is_array))
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for idx in _common.batches(len(x), args.batch_size, args.seed, epoch):
            model, opt_state, _ = make_step(model, opt_state, x[idx], y[idx])
        jax.block_until_ready(model)
        _common.emit(epoch=epoch + 1, seconds=time.perf_counter() - t0)
    accuracy = float((predict(model, x_test) == y_test).mean())
    _common.emit(test_accuracy=accuracy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
