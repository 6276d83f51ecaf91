"""Lever from issue 11, measured: what the optimizer update alone costs per course step.

The course model's parameters (784-512-256-10: 535,818 float32) are updated
938 times (one epoch of batch-64 steps) inside one jitted ``lax.scan``, from
stored gradients, with no forward or backward pass, so only the update is
timed (microseconds per step, the best of 3 epochs):

* ``sgd``: ``optax.sgd`` on the layer pytree (one read-modify-write pass);
* ``adam``: ``optax.adam`` on the layer pytree (what jaxnet runs): XLA makes
  three loops per weight (mu, nu, then the weight: a square root and two
  divisions per element);
* ``adam, PyTorch's arithmetic``: the same update written as PyTorch
  computes it (one division and one square root per element);
* ``adam, one flat vector``: ``optax.adam`` on the parameters raveled into
  one vector (fewer, longer loops; the flattening itself is not timed).

Run:  python benchmarks/experiments/optimizer_update.py
"""

from __future__ import annotations

import os
import time

SHAPES = [(784, 512), (512,), (512, 256), (256,), (256, 10), (10,)]
STEPS = 938


def main() -> int:
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax
    from jax.flatten_util import ravel_pytree

    key = jax.random.key(0)
    params = [jax.random.normal(jax.random.fold_in(key, i), s) for i, s in enumerate(SHAPES)]
    grads = [1e-3 * jax.random.normal(jax.random.fold_in(key, 10 + i), (8, *s))
             for i, s in enumerate(SHAPES)]  # 8 stored gradients, used in turn
    adam, sgd = optax.adam(0.01), optax.sgd(0.01)

    def with_optax(optimizer):
        def update(p, s, g):
            u, s = optimizer.update(g, s, p)
            return optax.apply_updates(p, u), s
        return update

    def torch_adam(p, s, g, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
        count, mu, nu = s
        count = count + 1
        t = count.astype(jnp.float32)
        step_size, bias2_sqrt = lr / (1 - b1**t), jnp.sqrt(1 - b2**t)
        mu = [b1 * m + (1 - b1) * gi for m, gi in zip(mu, g, strict=True)]
        nu = [b2 * n + (1 - b2) * gi * gi for n, gi in zip(nu, g, strict=True)]
        p = [pi - step_size * m / (jnp.sqrt(n) * (1 / bias2_sqrt) + eps)
             for pi, m, n in zip(p, mu, nu, strict=True)]
        return p, (count, mu, nu)

    def time_update(update, p, s, g_all):
        def body(carry, i):
            p, s = carry
            return update(p, s, jax.tree.map(lambda g: g[i % 8], g_all)), None

        run = jax.jit(lambda p, s: lax.scan(body, (p, s), jnp.arange(STEPS))[0],
                      donate_argnums=(0, 1))
        carry = run(jax.tree.map(jnp.copy, p), s)
        jax.block_until_ready(carry)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            carry = run(*carry)
            jax.block_until_ready(carry)
            best = min(best, time.perf_counter() - t0)
        return best / STEPS * 1e6

    flat = ravel_pytree(params)[0]
    flat_grads = jnp.stack([ravel_pytree([g[i] for g in grads])[0] for i in range(8)])
    def zeros():
        return [jnp.zeros_like(a) for a in params]
    cases = {
        "sgd": (with_optax(sgd), params, sgd.init(params), grads),
        "adam": (with_optax(adam), params, adam.init(params), grads),
        "adam, PyTorch's arithmetic": (torch_adam, params,
                                       (jnp.zeros((), jnp.int32), zeros(), zeros()), grads),
        "adam, one flat vector": (with_optax(adam), flat, adam.init(flat), flat_grads),
    }
    print(f"{os.cpu_count()} cores; jax {jax.__version__}; 1-minute load average "
          f"{os.getloadavg()[0]:.2f}; {sum(a.size for a in params):,} parameters, "
          f"{STEPS} steps per epoch")
    base = None
    for name, (update, p, s, g) in cases.items():
        us = time_update(update, p, s, g)
        base = base or us
        print(f"{name:28s} {us:7.1f} us per step ({us / base:.2f}x sgd)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
