"""Data parallel epoch time: 1 device vs N devices, the same global batch (``jaxnet.parallel``).

What it measures: the steady-state time of one MNIST training epoch (the
course's MLP 784-512-256-10, Adam, the whole epoch as one compiled scan,
compile excluded) through ``fit(..., mesh=parallel.make_mesh(N))``, against
the single-device path (``mesh=None``), at the same global batch sizes.

* On CPU (the default when JAX has no GPU): each configuration runs in its
  own process with the CPU split into N XLA devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=N``), so 1 vs 2
  devices compares the same cores used two ways. It is a correctness and
  overhead measurement, not a speed-up: one CPU host gains nothing from data
  parallel, since XLA already runs one device's matmuls on every core, and the
  split adds an all-reduce and a second program per step. Data parallel on
  CPU is for testing the multi-device code and for many hosts.
* On a GPU: samples/s at batch 64, 1024 and 8192 on one GPU, and the share of
  the GPU's peak that this is (6 FLOPs per parameter per example for a
  forward and backward pass of an MLP; peaks from a small table of known
  GPUs, or ``--peak-tflops``); with several GPUs, also all of them data
  parallel at the same global batch.

Configurations alternate between rounds (A B, then B A) so that drifting
load on a shared machine hits all of them; the median over rounds and steady
epochs is reported.

Run:  python benchmarks/parallel_epoch.py [--rounds 2] [--epochs 3] [--json out.json]
      python benchmarks/parallel_epoch.py --quick     (checks that it runs; not a measurement)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HIDDEN = (512, 256)
CPU_BATCHES = (64, 256)
GPU_BATCHES = (64, 1024, 8192)
# Dense (no sparsity) peaks in TFLOP/s: (FP32 on CUDA cores, TF32 on tensor cores). XLA runs
# float32 matmuls as TF32 on these GPUs at JAX's default precision.
GPU_PEAKS = {
    "H100 80GB HBM3": (67.0, 494.7),  # SXM5
    "H100 PCIe": (51.2, 378.0),
    "H200": (67.0, 494.7),
    "A100": (19.5, 156.0),
}


def _data_dir() -> str:
    return os.environ.get("JAXNET_DATA_DIR",
                          str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"))


def _flops_per_example(hidden=HIDDEN) -> float:
    sizes = [784, *hidden, 10]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    return 6.0 * params  # 2 per multiply-add forward, twice that backward


def measure(devices: int | None, batch_size: int, epochs: int, seed: int = 0) -> dict:
    """Train ``epochs`` epochs in this process; the steady epochs' times (compile excluded).

    ``devices=None`` is the single-device path (no mesh); an int builds a mesh of that
    many devices.
    """
    import jax
    import optax

    from jaxnet import losses, mnist, nn, parallel
    from jaxnet.train import TrainState, fit

    (x, y), _ = mnist.load_data(_data_dir())
    model_apply, params, model_state = nn.split(nn.MLP(784, list(HIDDEN), 10, rngs=0))

    def apply(p, s, pixels, *, train=False, rng=None):  # uint8 pixels, normalised on device
        return model_apply(p, s, mnist.normalize(pixels), train=train, rng=rng)

    optimizer = optax.adam(1e-3)
    mesh = None if devices is None else parallel.make_mesh(devices)
    state = TrainState.create(params, optimizer, model_state=model_state, seed=seed)
    _, history = fit(state, apply, losses.cross_entropy, optimizer, (x, y), epochs=epochs,
                     batch_size=batch_size, seed=seed, check_finite=False, progress=False,
                     log=None, mesh=mesh)
    steady = [e["train_seconds"] for e in history[1:]] or [history[0]["train_seconds"]]
    return {"devices": 1 if devices is None else devices, "mesh": devices is not None,
            "batch_size": batch_size, "examples": len(x), "steps": -(-len(x) // batch_size),
            "epoch_seconds": steady, "compile_seconds": history[0].get("compile_seconds"),
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind}


def _child(devices: int | None, batch_size: int, epochs: int) -> dict:
    """``measure`` in a fresh process with the CPU split into ``devices`` XLA devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices or 1}"}
    cmd = [sys.executable, __file__, "--child", str(devices or 0), str(batch_size), str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{cmd}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return (f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} "
                f"CPUs ({fields.get('Hypervisor vendor', 'bare metal').strip()})")
    except (OSError, subprocess.SubprocessError, ValueError):
        return platform.processor() or "unknown CPU"


def run_cpu(rounds: int, epochs: int) -> dict:
    configs = [(d, b) for b in CPU_BATCHES for d in (None, 2)]
    times: dict = {c: [] for c in configs}
    for r in range(rounds):
        for d, b in (configs if r % 2 == 0 else configs[::-1]):  # alternate the order
            out = _child(d, b, epochs)
            times[(d, b)] += out["epoch_seconds"]
            name = "1 device (no mesh)" if d is None else f"{d} devices"
            print(f"round {r + 1}: batch {b:4d}, {name}: "
                  f"{' '.join(f'{t:.2f}' for t in out['epoch_seconds'])} s/epoch", flush=True)
    rows = []
    for b in CPU_BATCHES:
        one, two = statistics.median(times[(None, b)]), statistics.median(times[(2, b)])
        steps = -(-60000 // b)
        rows.append({"batch_size": b, "one_device_s": one, "two_devices_s": two,
                     "one_device_ms_per_step": 1e3 * one / steps,
                     "two_devices_ms_per_step": 1e3 * two / steps, "ratio_two_over_one": two / one})
    return {"kind": "cpu", "cpu": _cpu_model(), "load_average": os.getloadavg(), "rows": rows}


def run_gpu(epochs: int, peak_tflops: float | None) -> dict:
    import jax

    kind = jax.devices()[0].device_kind
    peaks = next((v for k, v in GPU_PEAKS.items() if k in kind), None)
    if peak_tflops is not None:
        peaks = (peak_tflops, peak_tflops)
    n = jax.device_count()
    rows = []
    for b in GPU_BATCHES:
        for devices in (None, n) if n > 1 else (None,):
            out = measure(devices, b, epochs)
            seconds = statistics.median(out["epoch_seconds"])
            rate = out["examples"] / seconds
            row = {"batch_size": b, "devices": out["devices"], "epoch_s": seconds,
                   "samples_per_s": rate}
            if peaks is not None:
                achieved = rate * _flops_per_example() / 1e12 / out["devices"]
                row["share_of_fp32_peak"] = achieved / peaks[0]
                row["share_of_tf32_peak"] = achieved / peaks[1]
            rows.append(row)
            share = (f", {100 * row['share_of_tf32_peak']:.2f}% of the TF32 peak "
                     f"({100 * row['share_of_fp32_peak']:.1f}% of FP32)" if peaks else "")
            print(f"batch {b:5d}, {out['devices']} GPU(s): {seconds:.3f} s/epoch, "
                  f"{rate:,.0f} samples/s{share}", flush=True)
    return {"kind": "gpu", "device_kind": kind, "devices": n, "peak_tflops": peaks,
            "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's peak, if not in the table")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 1 round of 2 epochs (not a measurement)")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        devices, batch_size, epochs = args.child
        print(json.dumps(measure(devices or None, batch_size, epochs)))
        return 0
    if args.quick:
        args.rounds, args.epochs = 1, 2

    import jax

    gpu = jax.default_backend() == "gpu"
    result = run_gpu(args.epochs, args.peak_tflops) if gpu else run_cpu(args.rounds, args.epochs)
    result.update(date=datetime.date.today().isoformat(), jax=jax.__version__,
                  python=platform.python_version())
    if not gpu:
        print(f"\n{result['cpu']}; load average {result['load_average'][0]:.1f}; "
              f"jax {jax.__version__}, {result['date']}")
        print("batch  1 device (no mesh)      2 host devices        2 / 1")
        for r in result["rows"]:
            print(f"{r['batch_size']:5d}  {r['one_device_s']:6.2f} s "
                  f"({r['one_device_ms_per_step']:5.2f} ms/step)  {r['two_devices_s']:6.2f} s "
                  f"({r['two_devices_ms_per_step']:5.2f} ms/step)  "
                  f"{r['ratio_two_over_one']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
