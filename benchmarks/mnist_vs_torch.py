"""MNIST MLP: jaxnet vs PyTorch on this machine, measured in one run.

Both train the same recipe (default: the course's, 784-512-256-10, Adam lr
0.01, batch 64, 5 epochs, log-softmax + NLL) on the same IDX files with the
same threads, in fresh processes, alternating jaxnet and PyTorch each round
so machine noise hits both. Reported:

* per-epoch training time (median over epochs 2.. of every round: steady state)
  and the ratio jaxnet / PyTorch;
* jaxnet's achieved GFLOP/s against a matmul ceiling (the best of numpy,
  PyTorch and JAX on a 2048^3 fp32 matmul) measured in this run;
* time to first result: process start until the test accuracy is printed;
* peak resident memory of each process;
* ``import jaxnet`` vs ``import jax, flax, optax``.

Run:  nox -s bench      or   python benchmarks/mnist_vs_torch.py [--rounds 2] [--json out.json]
A quick check that it still runs: ``--quick`` (= ``--rounds 1 --epochs 2``).
``benchmarks/mnist_peers.py`` (``nox -s bench``) runs this comparison and the JAX peers.
(PyTorch comes from the ``torch`` extra: ``pip install torch==2.13.0``.)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Forward + backward FLOPs of one epoch of 784-512-256-10 over 60,000 images:
# 3x the forward matmuls, less the input gradient of the first layer (not needed).
FORWARD = 2 * (784 * 512 + 512 * 256 + 256 * 10) * 60000
EPOCH_GFLOP = (3 * FORWARD - 2 * 784 * 512 * 60000) / 1e9

RECIPES = {
    "course": dict(lr=0.01, batch_size=64, epochs=5),
}


def data_dir() -> Path:
    env = os.environ.get("JAXNET_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"


def read_idx(directory: Path, name: str, ndim: int):
    """A minimal numpy IDX reader, so the PyTorch worker does not import JAX."""
    import numpy as np

    data = gzip.decompress((directory / f"{name}.gz").read_bytes())
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_float(directory: Path, split: str):
    import numpy as np

    prefix = "train" if split == "train" else "t10k"
    images = read_idx(directory, f"{prefix}-images-idx3-ubyte", 3)
    labels = read_idx(directory, f"{prefix}-labels-idx1-ubyte", 1)
    x = ((images.reshape(len(images), -1).astype(np.float32) / 255.0) - 0.5) / 0.5
    return x, labels.astype(np.int64)


def emit(**record):
    print(json.dumps(record), flush=True)


def worker_torch(recipe: dict, seed: int) -> None:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(seed)
    x, y = load_float(data_dir(), "train")
    xt, yt = load_float(data_dir(), "test")
    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                        batch_size=recipe["batch_size"], shuffle=True)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10), nn.LogSoftmax(dim=1))
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    loss_fn = nn.NLLLoss()
    for epoch in range(recipe["epochs"]):
        t0 = time.perf_counter()
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
        emit(epoch=epoch + 1, seconds=time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(xt)).argmax(1) == torch.from_numpy(yt)).float().mean()
    emit(test_accuracy=float(acc))


def worker_jax(recipe: dict, seed: int) -> None:
    import jaxnet
    from jaxnet import mnist

    del jaxnet
    config = mnist.RECIPES["course"].with_updates(seed=seed, **recipe)
    result = mnist.train_mnist(config, data_dir=data_dir(), progress=False,
                               log=lambda line: None)
    for i, s in enumerate(result["epoch_seconds"]):
        emit(epoch=i + 1, seconds=s)
    emit(compile_seconds=result["compile_seconds"])
    emit(test_accuracy=result["test_accuracy"])


def run_worker(kind: str, recipe: str, seed: int, epochs: int) -> dict:
    """Run one worker process; measure time to first result and peak memory."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", kind, "--recipe", recipe,
                             "--seed", str(seed), "--epochs", str(epochs)],
                            stdout=subprocess.PIPE, text=True)
    out = {"epochs": [], "kind": kind}
    for line in proc.stdout:
        record = json.loads(line)
        if "epoch" in record:
            out["epochs"].append(record["seconds"])
        if "test_accuracy" in record:
            out["time_to_result"] = time.perf_counter() - start
        out.update({k: v for k, v in record.items() if k not in ("epoch", "seconds")})
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{kind} worker failed with status {status}")
    out["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return out


def matmul_ceiling(n: int = 2048) -> dict:
    """fp32 GFLOP/s of an n^3 matmul (best of 5) in numpy, PyTorch and JAX, in a subprocess each."""
    code = {
        "numpy": "import numpy as np; a=np.ones(({n},{n}),np.float32); f=lambda: a@a",
        "torch": "import torch; torch.set_num_threads({t}); a=torch.ones({n},{n}); f=lambda: a@a",
        "jax": "import jax, jax.numpy as jnp; a=jnp.ones(({n},{n})); g=jax.jit(lambda a: a@a); "
               "f=lambda: g(a).block_until_ready()",
    }
    timing = ("\nimport time\nf(); best=1e9\nfor _ in range(5):\n t=time.perf_counter(); f(); "
              "best=min(best, time.perf_counter()-t)\nprint(2*{n}**3/best/1e9)")
    out = {}
    for name, setup in code.items():
        src = (setup + timing).format(n=n, t=os.cpu_count() or 1)
        res = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True)
        if res.returncode == 0:
            out[name] = float(res.stdout.strip().splitlines()[-1])
    return out


def import_seconds(statements: dict[str, str], repeats: int = 9) -> dict[str, float]:
    """Median import time of each statement in fresh processes, interleaved so noise is shared."""
    times: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(repeats):
        for name, statement in statements.items():
            src = f"import time; t=time.perf_counter(); {statement}; print(time.perf_counter()-t)"
            res = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                                 check=True)
            times[name].append(float(res.stdout.strip().splitlines()[-1]))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="course")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's epochs (>= 2: epoch 1 includes compilation)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: --rounds 1 --epochs 2 (not a measurement)")
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and not args.worker:
        args.rounds, args.epochs = 1, 2
    if args.epochs is not None and args.epochs < 2:
        parser.error(f"--epochs: expected at least 2 (the steady state is epochs 2..), "
                     f"got {args.epochs}")
    recipe = dict(RECIPES[args.recipe])
    if args.epochs is not None:
        recipe["epochs"] = args.epochs
    if args.worker:
        (worker_jax if args.worker == "jax" else worker_torch)(recipe, args.seed)
        return 0

    print(f"machine: {os.cpu_count()} cores; recipe {args.recipe} {recipe}; "
          f"{args.rounds} alternating rounds", flush=True)
    runs = {"jax": [], "torch": []}
    for r in range(args.rounds):
        for kind in ("jax", "torch"):
            res = run_worker(kind, args.recipe, args.seed + r, recipe["epochs"])
            runs[kind].append(res)
            print(f"round {r + 1} {kind:5s}: epochs " +
                  " ".join(f"{s:.2f}" for s in res["epochs"]) +
                  f" s; accuracy {res['test_accuracy']:.4f}; first result "
                  f"{res['time_to_result']:.1f} s; peak {res['peak_rss_mib']:.0f} MiB",
                  flush=True)
    ceiling = matmul_ceiling()
    imports = import_seconds({"jax, flax, optax": "import jax, flax.nnx, optax",
                              "jaxnet": "import jaxnet"})

    def summary(kind):
        rs = runs[kind]
        return {
            "steady_epoch_s": statistics.median(s for r in rs for s in r["epochs"][1:]),
            "first_epoch_s": statistics.median(r["epochs"][0] for r in rs),
            "time_to_result_s": statistics.median(r["time_to_result"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "test_accuracy": [r["test_accuracy"] for r in rs],
        }

    jx, tc = summary("jax"), summary("torch")
    best = max(ceiling.values())
    gflops = EPOCH_GFLOP / jx["steady_epoch_s"]
    result = {
        "recipe": args.recipe, "jaxnet": jx, "pytorch": tc, "matmul_ceiling_gflops": ceiling,
        "jaxnet_gflops": gflops, "fraction_of_ceiling": gflops / best,
        "epoch_ratio": jx["steady_epoch_s"] / tc["steady_epoch_s"],
        "time_to_result_ratio": jx["time_to_result_s"] / tc["time_to_result_s"],
        "import_seconds": imports,
        "import_ratio": imports["jaxnet"] / imports["jax, flax, optax"],
    }
    rows = [
        ("steady-state epoch (median)", f"{jx['steady_epoch_s']:.2f} s",
         f"{tc['steady_epoch_s']:.2f} s", f"{result['epoch_ratio']:.2f}"),
        ("first epoch", f"{jx['first_epoch_s']:.2f} s", f"{tc['first_epoch_s']:.2f} s",
         f"{jx['first_epoch_s'] / tc['first_epoch_s']:.2f}"),
        ("time to first result", f"{jx['time_to_result_s']:.1f} s",
         f"{tc['time_to_result_s']:.1f} s", f"{result['time_to_result_ratio']:.2f}"),
        ("peak memory (RSS)", f"{jx['peak_rss_mib']:.0f} MiB", f"{tc['peak_rss_mib']:.0f} MiB",
         f"{jx['peak_rss_mib'] / tc['peak_rss_mib']:.2f}"),
        ("test accuracy", " / ".join(f"{a:.4f}" for a in jx["test_accuracy"]),
         " / ".join(f"{a:.4f}" for a in tc["test_accuracy"]), ""),
    ]
    print("\n| | jaxnet | PyTorch | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\njaxnet: {gflops:.0f} GFLOP/s = {100 * result['fraction_of_ceiling']:.0f}% of the "
          f"matmul ceiling {best:.0f} GFLOP/s (" +
          ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()) + f"); {EPOCH_GFLOP:.1f} "
          f"GFLOP per epoch")
    print(f"import: jaxnet {imports['jaxnet']:.2f} s vs jax+flax+optax "
          f"{imports['jax, flax, optax']:.2f} s (ratio {result['import_ratio']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
