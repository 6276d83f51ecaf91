"""Lever from issue 11, measured: Adam over one flat parameter vector vs over the layer pytree.

XLA's CPU backend updates each weight matrix of a pytree in separate loops
(Adam's mu, nu, then the weights). Keeping the parameters (and so Adam's
state) as one flat float32 vector lets one fused loop do the whole update,
and the model unflattens it (slices + reshapes) inside the step. The flat
vector is a pytree with one leaf, so every optax transform still applies;
those that work element by element (adam, sgd, rmsprop, global-norm
clipping) compute the same function (XLA may round the fused loop
differently: this script checks bit-identity), while per-leaf ones
(lamb/lars trust ratios, clip_by_block_rms, masks or multi_transform by
parameter name) would then see one block instead of one per layer.

Both variants (and, with ``--naive``, a third that differentiates through
the slices of the flat vector, which XLA then fuses into slow naive matmuls)
run the same epoch as jaxnet's fast path, written out here in
plain JAX (jaxnet/ is untouched): one jitted ``lax.scan`` over batches
gathered on the device from uint8 pixels, normalised inside, the course
recipe (784-512-256-10, log-softmax + masked NLL, Adam 0.01, batch 64, the
last batch padded and masked), donated state. The variants alternate epoch
by epoch in one process (the order flips every round) so noise hits both;
reported: the median steady-state epoch of each, their per-round ratios, and
whether the two trainings end bit-identical from the same start, and the
parts: Adam's update alone on either layout, and the slicing + concatenation
the flat layout adds to every step.

Measured on the 2-core AMD EPYC (Zen 2, AVX2) of 2026-11-24: the flat
layout is 11.6x slower per epoch. ``jax.profiler`` puts 7.7 s of its 16.5 s
epoch in the one loop fusion that concatenates the gradients into the flat
vector (8 ms a step: XLA's CPU concatenate emitter), and inside a scan the
flat Adam update alone takes 234-260 us a step against 283-299 us on the
pytree (``optimizer_update.py``; both vary up to 2x with the host): the
update is bound by memory traffic and fp32 divide/sqrt throughput, not by
per-leaf overhead, so this lever buys at most ~3% of a step even if the
concatenation were free. jaxnet keeps the pytree.

Run:  python benchmarks/experiments/flat_adam.py [--rounds 6] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import _common  # noqa: E402  (numpy only: the shared IDX reader and shuffle order)


def components(jax, jnp, optax, ravel_pytree, init, unravel, barrier, n: int = 300) -> None:
    """Where the time goes: Adam's update alone on the pytree and on the flat vector, and
    the slicing + concatenation that the flat layout adds to every step (ms per call)."""
    optimizer = optax.adam(0.01)

    def update(p, s, g):
        u, s = optimizer.update(g, s, p)
        return optax.apply_updates(p, u), s

    step = jax.jit(update, donate_argnums=(0, 1))
    roundtrip = jax.jit(lambda p: ravel_pytree(barrier(unravel(p)))[0])

    def ms(params, grads):
        out = step(params, optimizer.init(params), grads)
        jax.block_until_ready(out)
        t0 = time.perf_counter()
        for _ in range(n):
            out = step(*out, grads)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / n * 1e3

    tree = init(jax.random.key(0))
    grads = jax.tree.map(lambda a: a * 1e-3, tree)
    flat = ravel_pytree(tree)[0]
    t_tree, t_flat = ms(tree, grads), ms(jnp.copy(flat), ravel_pytree(grads)[0])
    jax.block_until_ready(roundtrip(flat))
    t0 = time.perf_counter()
    for _ in range(n):
        out = roundtrip(flat)
    jax.block_until_ready(out)
    t_copy = (time.perf_counter() - t0) / n * 1e3
    print(f"\nper step: Adam update on the pytree {t_tree:.2f} ms, on the flat vector "
          f"{t_flat:.2f} ms; the flat layout's slices + concatenation {t_copy:.2f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="timed epochs per variant (6)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 2 rounds (not a measurement)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--naive", action="store_true",
                        help="also time differentiating through the flat vector's slices "
                             "(slow: XLA fuses them into naive matmuls)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 2

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.flatten_util import ravel_pytree

    directory = _common.data_dir(args.data_dir)
    x_u8, y = _common.load_split(directory, "train")
    n, b = len(x_u8), args.batch_size
    steps = -(-n // b)
    x_dev, y_dev = jnp.asarray(x_u8), jnp.asarray(y, jnp.int32)

    def epoch_batches(epoch):
        """jaxnet's order for (seed 0, epoch), padded to (steps, b) with a mask."""
        order = np.zeros(steps * b, np.int32)
        order[:n] = _common.epoch_order(n, 0, epoch)
        mask = np.arange(steps * b) < n
        return jnp.asarray(order.reshape(steps, b)), jnp.asarray(mask.reshape(steps, b))

    def init(key, sizes=(784, 512, 256, 10)):
        layers = []
        for fan_in, fan_out, k in zip(sizes[:-1], sizes[1:],
                                      jax.random.split(key, len(sizes) - 1), strict=True):
            bound = _common.torch_bound(fan_in)
            kw, kb = jax.random.split(k)
            layers.append({"w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32,
                                                   -bound, bound),
                           "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound)})
        return layers

    def mlp(layers, x):
        x = (x.astype(jnp.float32) / 255.0 - 0.5) / 0.5
        for layer in layers[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return jax.nn.log_softmax(x @ layers[-1]["w"] + layers[-1]["b"])

    def nll(log_probs, labels, mask):
        picked = jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0]
        return -jnp.sum(jnp.where(mask, picked, 0.0)) / jnp.maximum(mask.sum(), 1)

    optimizer = optax.adam(0.01)

    barrier = jax.lax.optimization_barrier

    def make_epoch(kind):
        """The jitted whole-epoch scan; ``kind`` says how the parameters are held."""
        def grads_of(params, xb, yb, m):
            def loss_of(layers):
                return nll(mlp(layers, xb), yb, m)
            if kind == "pytree":
                return jax.value_and_grad(loss_of)(params)
            if kind == "flat-naive":  # differentiate through the slices of the flat vector
                return jax.value_and_grad(lambda p: loss_of(unravel(p)))(params)
            # flat: slice out the layers and concatenate their gradients outside the
            # differentiated function, behind barriers, so XLA cannot fuse the slices
            # or the concatenation into the matmuls
            loss, grads = jax.value_and_grad(loss_of)(barrier(unravel(params)))
            return loss, ravel_pytree(barrier(grads))[0]

        def run_epoch(params, opt_state, idx, mask):
            def body(carry, batch):
                params, opt_state = carry
                i, m = batch
                loss, grads = grads_of(params, jnp.take(x_dev, i, axis=0),
                                       jnp.take(y_dev, i, axis=0), m)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss
            return jax.lax.scan(body, (params, opt_state), (idx, mask))
        return jax.jit(run_epoch, donate_argnums=(0, 1))

    _, unravel = ravel_pytree(init(jax.random.key(0)))
    names = ["pytree", "flat"] + (["flat-naive"] if args.naive else [])
    variants = {name: (make_epoch(name), (lambda: init(jax.random.key(0))) if name == "pytree"
                       else (lambda: ravel_pytree(init(jax.random.key(0)))[0]))
                for name in names}

    print(f"CPU: {os.cpu_count()} cores; jax {jax.__version__}; 1-minute load average "
          f"{os.getloadavg()[0]:.2f}" + (" (QUICK: not a measurement)" if args.quick else ""),
          flush=True)
    states, times, final = {}, {k: [] for k in variants}, {}
    for name, (run, make_params) in variants.items():  # compile + epoch 0, untimed
        params = make_params()
        t0 = time.perf_counter()
        carry, _ = run(params, optimizer.init(params), *epoch_batches(0))
        jax.block_until_ready(carry)
        states[name] = carry
        print(f"{name}: compile + first epoch {time.perf_counter() - t0:.2f} s", flush=True)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            run = variants[name][0]
            batches = epoch_batches(r + 1)
            t0 = time.perf_counter()
            states[name], _ = run(*states[name], *batches)
            jax.block_until_ready(states[name])
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {times[k][-1]:.2f} s" for k in names)
              + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    for name in names:
        params = states[name][0]
        final[name] = np.asarray(params if name != "pytree" else ravel_pytree(params)[0])
    components(jax, jnp, optax, ravel_pytree, init, unravel, barrier)
    tree = statistics.median(times["pytree"])
    print(f"\nmedian epoch: pytree {tree:.3f} s; load average now {os.getloadavg()[0]:.2f}")
    for name in names[1:]:
        ratios = [f / t for f, t in zip(times[name], times["pytree"], strict=True)]
        same = bool(np.array_equal(final["pytree"], final[name]))
        diff = np.abs(final["pytree"] - final[name]).max()
        print(f"{name}: {statistics.median(times[name]):.3f} s, {name} / pytree "
              f"{statistics.median(times[name]) / tree:.3f} (per round {min(ratios):.3f} .. "
              f"{max(ratios):.3f}); after {args.rounds + 1} epochs from the same start: "
              + ("bit-identical parameters" if same else f"parameters differ (max |diff| "
                                                         f"{diff:.3g})"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
