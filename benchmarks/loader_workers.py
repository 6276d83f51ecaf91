"""DataLoader(num_workers=N): batches per second for per-item datasets, N = 0, 1, 2, 4.

``num_workers > 0`` fetches and collates batches ahead in N threads (see
``jaxnet.data.DataLoader``). Threads help only when ``__getitem__`` lets go
of the GIL; this measures three kinds of per-item work:

* ``sleep``: ``time.sleep(0.001)``, standing for I/O (reading a file, a network
  store), which releases the GIL;
* ``python``: a pure-Python loop of about the same length, which holds it;
* ``numpy``: sorting a 20,000-element array, numpy work that releases it.

Each cell is the median of ``--repeats`` epochs (batches/s, higher is better);
the last column is the best speedup over ``num_workers=0``. ``--consume-ms``
adds a per-batch pause in the consuming loop, like a training step running
while the workers fetch the next batches.

Run:  python benchmarks/loader_workers.py [--batches 20] [--repeats 3] [--json out.json]
      (``--quick``: 4 batches, 1 repeat, to check that it runs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jaxnet.data import DataLoader, Dataset

WORKERS = (0, 1, 2, 4)


class SleepDataset(Dataset):
    """Each item waits 1 ms, like a read from disk: the GIL is free meanwhile."""

    def __init__(self, n: int):
        self.x = np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)
        self.y = np.arange(n, dtype=np.int32) % 10

    def __getitem__(self, index):
        time.sleep(0.001)
        return self.x[index], self.y[index]

    def __len__(self):
        return len(self.y)


class PythonDataset(SleepDataset):
    """Each item runs a pure-Python loop (decoding, augmenting in Python): holds the GIL."""

    def __getitem__(self, index):
        acc = 0
        for i in range(10_000):
            acc += i * i % 7
        return self.x[index] + (acc % 2), self.y[index]


class NumpyDataset(SleepDataset):
    """Each item sorts a copy of a 20,000-element array: numpy releases the GIL inside."""

    def __init__(self, n: int):
        super().__init__(n)
        self.data = np.random.default_rng(1).normal(size=20_000).astype(np.float32)

    def __getitem__(self, index):
        s = np.sort(self.data)
        return self.x[index] + s[index % len(s)], self.y[index]


DATASETS = {"sleep": SleepDataset, "python": PythonDataset, "numpy": NumpyDataset}


def cpu_model() -> str:
    """The CPU's name as ``lscpu`` reports it (then /proc/cpuinfo, then platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def batches_per_second(dataset, workers: int, batch_size: int, repeats: int,
                       consume_s: float) -> float:
    """Median over ``repeats`` epochs of (batches / seconds) for one loader setting."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    rates = []
    for epoch in range(repeats + 1):  # epoch 0 warms up (thread pool, caches)
        t0 = time.perf_counter()
        n = 0
        for _x, _y in loader.iter_epoch(epoch):
            n += 1
            if consume_s:
                time.sleep(consume_s)
        if epoch:
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches per epoch (20)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per cell (3)")
    parser.add_argument("--consume-ms", type=float, default=0.0,
                        help="pause per batch in the consuming loop, like a train step (0)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: --batches 4 --repeats 1 (not a measurement)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.repeats = 4, 1
    if args.batches < 1 or args.batch_size < 1 or args.repeats < 1 or args.consume_ms < 0:
        parser.error("--batches, --batch-size and --repeats must be >= 1, --consume-ms >= 0")

    n = args.batches * args.batch_size
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"CPU: {cpu_model()}; {os.cpu_count()} logical cores; Python "
          f"{platform.python_version()} (GIL {'on' if gil else 'off'})")
    print(f"{args.batches} batches of {args.batch_size} per epoch, median of {args.repeats} "
          f"epochs; consumer pause {args.consume_ms:g} ms/batch\n")

    results = {}
    for name, cls in DATASETS.items():
        dataset = cls(n)
        t0 = time.perf_counter()
        for i in range(200):
            dataset[i % n]
        per_item_ms = (time.perf_counter() - t0) / 200 * 1e3
        rates = {w: batches_per_second(dataset, w, args.batch_size, args.repeats,
                                       args.consume_ms / 1e3) for w in WORKERS}
        results[name] = {"per_item_ms": per_item_ms, "batches_per_s": rates}
        print(f"  measured {name}: {per_item_ms:.2f} ms/item; " +
              ", ".join(f"{w} workers {r:.1f}" for w, r in rates.items()), flush=True)

    header = "| `__getitem__` | ms/item | " + " | ".join(f"workers={w}" for w in WORKERS) + \
        " | best speedup |"
    print("\nbatches/s\n\n" + header + "\n|" + "---|" * (len(WORKERS) + 3))
    for name, r in results.items():
        rates = r["batches_per_s"]
        best = max(rates[w] for w in WORKERS[1:]) / rates[0]
        print(f"| {name} | {r['per_item_ms']:.2f} | " +
              " | ".join(f"{rates[w]:.1f}" for w in WORKERS) + f" | {best:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_model(), "cores": os.cpu_count(),
                                               "args": vars(args), "results": results},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
