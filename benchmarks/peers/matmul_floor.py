"""The matmul floor: the course step's eight matmuls alone, one jitted XLA function, x steps.

The course's MLP (784-512-256-10) at batch 64 does eight matmuls per
training step: three forward (64x784 @ 784x512, 64x512 @ 512x256,
64x256 @ 256x10), three weight gradients (784x64 @ 64x512, 512x64 @ 64x256,
256x64 @ 64x10) and two input gradients (64x10 @ 10x256, 64x256 @ 256x512;
nobody computes the pixels' gradient). Here they are one ``jax.jit``
function of fixed random float32 inputs, called ``ceil(60000 / batch)``
times (938) back to back, blocking once at the end: a "floor epoch", the
time XLA's own kernels need for the step's matmuls with no activation,
loss, optimizer update or data movement. ``benchmarks/mnist_peers.py``
reports jaxnet's epoch divided by it.

It speaks the peers' protocol (``_common.emit``): one ``epoch`` record per
floor epoch and ``test_accuracy`` null (nothing is trained).

Run:  python benchmarks/peers/matmul_floor.py [--epochs 5] [--batch-size 64] [--hidden 512 256]
"""

from __future__ import annotations

import time

import _common


def main(argv=None) -> int:
    args = _common.parse_args(__doc__.splitlines()[0], argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    _common.emit(versions={"jax": jax.__version__})
    sizes = [784, *args.hidden, 10]
    b = args.batch_size
    rng = np.random.default_rng(args.seed)

    def rand(*shape):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32))

    weights = [rand(i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    acts = [rand(b, n) for n in sizes[:-1]]     # each layer's input
    grads = [rand(b, n) for n in sizes[1:]]     # each layer's output gradient

    @jax.jit
    def step(weights, acts, grads):
        forward = [a @ w for a, w in zip(acts, weights, strict=True)]
        weight_grads = [a.T @ g for a, g in zip(acts, grads, strict=True)]
        input_grads = [g @ w.T for g, w in zip(grads[1:], weights[1:], strict=True)]
        return forward, weight_grads, input_grads

    steps = -(-60_000 // b)
    jax.block_until_ready(step(weights, acts, grads))  # compile
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for _ in range(steps):
            out = step(weights, acts, grads)
        jax.block_until_ready(out)
        _common.emit(epoch=epoch + 1, seconds=time.perf_counter() - t0)
    _common.emit(test_accuracy=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
