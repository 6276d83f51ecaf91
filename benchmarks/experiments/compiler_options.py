"""Lever from issue 11, measured: XLA CPU compiler options on jaxnet's course epoch.

Compiles jaxnet's whole-epoch scan (``train.make_epoch``, the course recipe:
784-512-256-10, log-softmax + NLL, Adam 0.01, batch 64, uint8 pixels
normalised inside the step) once per option set, passed per compilation
(``Lowered.compile(compiler_options=...)``, so nothing global changes), runs
the variants' epochs alternating (the order flips every round) from the same
start, and reports each one's median epoch, its ratio to the default and
whether its parameters stay bit-identical to the default's.

The default set tried (each alone): the concurrency-optimised scheduler,
256-bit vectors, XNNPACK, and YNNPACK fusing a dot with its neighbours.
Options are ``name=value`` arguments; an option this jaxlib does not know is
reported and skipped.

Run:  python benchmarks/experiments/compiler_options.py [--rounds 4] [name=value ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _course import course_epoch  # noqa: E402

DEFAULT_OPTIONS = [
    "xla_cpu_enable_concurrency_optimized_scheduler=true",
    "xla_cpu_prefer_vector_width=256",
    "xla_cpu_use_xnnpack=true",
    "xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT",
]


def parse_option(text: str) -> dict:
    name, _, value = text.partition("=")
    if not name or not value:
        raise SystemExit(f"option: expected name=value, got {text!r}")
    return {name: {"true": True, "false": False}.get(value.lower(), value)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", nargs="*", default=DEFAULT_OPTIONS)
    parser.add_argument("--rounds", type=int, default=4, help="timed epochs per variant (4)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    import jax

    course = course_epoch(args.data_dir, args.rounds + 1)
    epoch, data, batches = course.epoch, course.data, course.batches

    variants: dict[str, dict] = {"default": {}}
    for text in args.options:
        variants[text] = parse_option(text)
    compiled, states = {}, {}
    for name, options in list(variants.items()):
        state = course.new_state()
        try:
            compiled[name] = epoch.lower(state, data, *batches[0]).compile(
                compiler_options=options or None)
        except Exception as error:  # noqa: BLE001  (an unknown option: say so, go on)
            print(f"{name}: skipped ({str(error).splitlines()[0]})")
            del variants[name]
            continue
        states[name], _ = compiled[name](state, data, *batches[0])  # compile + epoch 0, untimed
        jax.block_until_ready(states[name])

    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    print(f"{len(names)} variants, {args.rounds} rounds; 1-minute load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            states[name], _ = compiled[name](states[name], data, *batches[r + 1])
            jax.block_until_ready(states[name])
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["default"])
    reference = jax.tree.leaves(states["default"].params)
    for name in names:
        median = statistics.median(times[name])
        same = all(np.array_equal(a, b)
                   for a, b in zip(jax.tree.leaves(states[name].params), reference, strict=True))
        print(f"{name:62s} {median:.3f} s  {median / base:.3f}x  "
              f"{'bit-identical' if same else 'NOT bit-identical'}  "
              + " ".join(f"{t:.2f}" for t in times[name]))
    print(f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
