"""Where one course training step spends its time, op by op (issue 11's levers, measured).

Compiles jaxnet's whole-epoch scan for the course recipe (784-512-256-10,
log-softmax + NLL, Adam 0.01, batch 64, uint8 pixels normalised inside the
step), runs two epochs untimed, then one epoch under ``jax.profiler`` and adds
up the time of every XLA op the CPU runtime ran, grouped by what the op does
(read from the compiled HLO):

* ``matmul``: dots (XLA's own and the YNNPACK ones), with their shapes and
  GFLOP/s, and their share of the machine's matmul ceiling (the best of numpy,
  PyTorch and JAX on 2048^3, as ``mnist_peers.py`` measures it);
* ``optimizer``: element-wise loops over a parameter's shape (Adam's mu,
  nu and parameter updates), and the copies XLA inserts of a weight;
* ``other``: the rest (gather + normalise, activations, softmax, loss).

Ops can overlap on the two cores, so the groups can add up to more than the
step. The profiler adds a few percent.

Run:  python benchmarks/experiments/step_profile.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _course import course_epoch  # noqa: E402
from mnist_peers import matmul_ceiling  # noqa: E402


def op_kinds(hlo: str, param_shapes: set[str]) -> dict[str, tuple[str, str]]:
    """``{op name: (group, description)}`` for the ops of the compiled module."""
    kinds = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\w+\[[\d,]*\])\S* (\w[\w\-]*)\((.*)", line)
        if not m:
            continue
        name, shape, op, rest = m.groups()
        if op == "dot" or name.startswith(("ynn_fusion", "xnn_fusion", "onednn")):
            kinds[name] = ("matmul", shape)
        elif op in ("fusion", "copy") and shape.split("[")[1] in param_shapes:
            kinds[name] = ("optimizer", shape)
        else:
            kinds[name] = ("other", shape)
    return kinds


def dot_flops(hlo: str) -> dict[str, float]:
    """FLOPs of each dot and YNNPACK dot fusion: 2 * (output size) * (contracted size)."""
    flops = {}
    shapes = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = \w+\[([\d,]*)\]\S* ([\w\-]+)\(([^)]*)\)(.*)",
                     line)
        if not m:
            continue
        name, dims, op, args, rest = m.groups()
        shapes[name] = [int(d) for d in dims.split(",") if d]
        if op == "dot":
            lhs = args.split(",")[0].strip().lstrip("%")
            c = re.search(r"lhs_contracting_dims=\{(\d+)\}", rest)
            if lhs in shapes and c:
                flops[name] = 2 * np.prod(shapes[name]) * shapes[lhs][int(c.group(1))]
        elif name.startswith("ynn_fusion") and op == "fusion":
            operands = [a.strip().lstrip("%") for a in args.split(",")]
            if len(operands) == 2 and all(o in shapes for o in operands):
                a, b = shapes[operands[0]], shapes[operands[1]]
                out = shapes[name]
                if len(a) == 2 and len(b) == 2 and len(out) == 2 and a[0] == out[0]:
                    flops[name] = 2 * np.prod(out) * a[1]
    return flops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    import jax

    course = course_epoch(args.data_dir, 3)
    state, data, batches = course.new_state(), course.data, course.batches
    compiled = course.epoch.lower(state, data, *batches[0]).compile()
    hlo = compiled.as_text()
    param_shapes = {",".join(map(str, p.shape)) + "]" for p in jax.tree.leaves(state.params)}
    kinds, flops = op_kinds(hlo, param_shapes), dot_flops(hlo)
    for e in range(2):
        state, _ = compiled(state, data, *batches[e])
    jax.block_until_ready(state)
    steps = batches[2][0].shape[0]

    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        t0 = time.perf_counter()
        state, _ = compiled(state, data, *batches[2])
        jax.block_until_ready(state)
        wall = time.perf_counter() - t0
        jax.profiler.stop_trace()
        trace = next(Path(trace_dir).rglob("*.trace.json.gz"))
        events = json.loads(gzip.decompress(trace.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in kinds:
            per_op[e["name"]] += e["dur"] / steps  # the trace is in microseconds

    ceiling = max(matmul_ceiling().values())  # as nox -s bench measures it
    step_us = wall / steps * 1e6
    print(f"course MLP, batch {batches[2][0].shape[1]}, {steps} steps: "
          f"{wall:.2f} s profiled ({step_us:.0f} us per step); matmul ceiling "
          f"{ceiling:.0f} GFLOP/s")
    groups = collections.Counter()
    for name, us in per_op.items():
        groups[kinds[name][0]] += us
    for group, us in groups.most_common():
        print(f"\n{group:10s} {us:7.1f} us per step ({us / step_us:.0%} of the step)")
        for name, op_us in sorted(((n, u) for n, u in per_op.items() if kinds[n][0] == group),
                                  key=lambda t: -t[1])[:8]:
            rate = ""
            if name in flops:
                gflops = flops[name] / (op_us * 1e-6) / 1e9
                rate = f"  {gflops:6.1f} GFLOP/s ({gflops / ceiling:.0%} of the ceiling)"
            print(f"  {name:28s} {kinds[name][1]:18s} {op_us:7.1f} us{rate}")
    total_flops = sum(flops[name] for name in per_op if name in flops)  # the ops that ran
    print(f"\nall matmuls: {total_flops / 1e6:.1f} MFLOP per step; at the ceiling they would "
          f"take {total_flops / ceiling / 1e3:.0f} us, {total_flops / ceiling / 1e3 / step_us:.0%} "
          f"of this step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
