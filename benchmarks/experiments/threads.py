"""Lever from issue 11, measured: how jaxnet's course epoch uses the cores (thread settings).

Runs ``benchmarks/peers/jaxnet_scan.py`` (what ``jaxnet train mnist --recipe
course`` runs) in fresh processes under each setting, alternating settings
every round (the order flips) so noise hits all; reports the median
steady-state epoch (epochs 2..) of each and its ratio to the default:

* ``default``: as installed, all cores;
* ``1 core``: pinned to one core with ``taskset -c 0`` (what a second core buys);
* ``eigen single-threaded``: ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``
  (XLA's matmuls on one thread, the rest of the runtime unchanged).

Run:  python benchmarks/experiments/threads.py [--rounds 3] [--epochs 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

PEER = Path(__file__).resolve().parents[1] / "peers" / "jaxnet_scan.py"


def settings() -> dict[str, tuple[list[str], dict]]:
    out = {"default": ([], {})}
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        out["1 core"] = (["taskset", "-c", "0"], {})
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    out["eigen single-threaded"] = ([], {"XLA_FLAGS": flags})
    return out


def epochs_of(prefix: list[str], env: dict, epochs: int) -> list[float]:
    res = subprocess.run([*prefix, sys.executable, str(PEER), "--epochs", str(epochs)],
                         capture_output=True, text=True, env={**os.environ, **env}, check=True)
    records = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return [r["seconds"] for r in records if "epoch" in r]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (>= 2)")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 1 round of 2 epochs (not a measurement)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 1, 2
    variants = settings()
    names = list(variants)
    print(f"{os.cpu_count()} cores; 1-minute load average {os.getloadavg()[0]:.2f}"
          + (" (QUICK: not a measurement)" if args.quick else ""), flush=True)
    steady: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            epochs = epochs_of(*variants[name], args.epochs)
            steady[name] += epochs[1:]
            print(f"round {r + 1} {name:22s} " + " ".join(f"{s:.2f}" for s in epochs)
                  + f" s; load {os.getloadavg()[0]:.2f}", flush=True)
    base = statistics.median(steady["default"])
    print()
    for name in names:
        median = statistics.median(steady[name])
        print(f"{name:22s} median epoch {median:.3f} s ({median / base:.2f}x the default)")
    print(f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
