"""MNIST MLP: jaxnet vs PyTorch, Flax NNX, Keras 3 and Equinox on this machine, in one run.

Every peer (``benchmarks/peers/``) trains the same model (784-512-256-10,
ReLU, log-softmax + NLL), with the same recipe (the course's: Adam lr 0.01
constant, batch 64, 5 epochs), the same data (the same uint8 IDX files,
``(x / 255 - 0.5) / 0.5``, a fresh shuffle every epoch) and PyTorch's
initialisation, each in its framework's documented idiom, in a fresh process.
The peers alternate within each round (the order rotates every round) so
machine noise hits them all. Reported in one table:

* steady-state epoch: the median over epochs 2.. of every round;
* share of the ceiling: the model's FLOPs per epoch / epoch time / the
  machine's matmul ceiling (the best of numpy, PyTorch and JAX on a 2048^3
  fp32 matmul, measured in this run, before and after the peers);
* time to first result: process start until the test accuracy is printed;
* peak resident memory (RSS) of the process;
* jaxnet's ratio to each (below 1: jaxnet is faster / smaller);

then the issue's targets against the per-round numbers, and the cost growth:
steady-state epoch of jaxnet and PyTorch for batch sizes 64, 256, 1024, 8192
and hidden widths 512 (784-512-256-10) and 2048 (784-2048-1024-10), as a
table and a plot (``cost_growth.png``). The numbers go to ``mnist_peers.json``
and ``cost_growth.json`` beside the plot.

The machine must be quiet: a full run starts only when the 1-minute load
average is below ``--max-start-load`` (1.5). A peer's run is kept only if the
load average stayed at most ``--max-load`` (3.0; the benchmark itself adds
~2 on two cores) and other processes used at most ``--max-other-cpu`` cores
(0.5; the machine's busy time from /proc/stat less the peer's own) while it
ran; otherwise it is rerun once the machine is quiet again, waiting at most
``--wait`` seconds in all. A section (the table, the cost growth) that cannot
be measured so is reported as stopped and not written; the exit status is
then 3 (2: the machine was never quiet). The JSON files record the load, the
other processes' CPU and jaxnet's commit (and uncommitted files) with the
numbers. ``--quick`` (1 round, 2 epochs, a corner of the grid, no gate,
results in ``benchmarks/results/quick/``) only checks that everything runs:
its numbers are not measurements.

Run:  nox -s bench      or   python benchmarks/mnist_peers.py [--quick] [--rounds 2]
(the peers' packages: ``pip install -e .[torch,bench]``)
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
RESULTS = HERE / "results"
N_TRAIN = 60_000


class Peer:
    """One framework's script in ``benchmarks/peers/`` and the package it needs."""

    def __init__(self, key, label, script, package, env=None):
        self.key, self.label, self.script, self.package = key, label, script, package
        self.env = env or {}


PEERS = [
    Peer("jaxnet", "jaxnet (whole-epoch scan)", "jaxnet_scan.py", "jaxnet"),
    Peer("pytorch", "PyTorch, DataLoader", "torch_dataloader.py", "torch"),
    Peer("nnx", "Flax NNX, nnx.Optimizer + nnx.jit loop", "nnx_jit.py", "flax"),
    Peer("keras", "Keras 3 on JAX, model.fit", "keras_fit.py", "keras", {"KERAS_BACKEND": "jax"}),
    Peer("equinox", "Equinox, filter_jit loop", "equinox_jit.py", "equinox"),
]
BY_KEY = {p.key: p for p in PEERS}
JAX_PEERS = ("nnx", "keras", "equinox")
GRID_BATCHES = (64, 256, 1024, 8192)
GRID_WIDTHS = (512, 2048)
QUICK_GRID = ((256, 512), (8192, 512))


def hidden_of(width: int) -> list[int]:
    """Hidden layers of width ``width``: the course's shape (512, 256) scaled."""
    return [width, width // 2]


def epoch_gflop(hidden, n: int = N_TRAIN) -> float:
    """Forward + backward matmul GFLOP of one epoch: 3x the forward matmuls, less the
    input gradient of the first layer (nobody computes it)."""
    sizes = [784, *hidden, 10]
    forward = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return (3 * forward - 2 * sizes[0] * sizes[1]) * n / 1e9


# ---------------------------------------------------------------- the machine

def cpu_info() -> dict:
    """CPU model (``lscpu``), family/model numbers, cores and whether AVX-512F / AVX2 exist."""
    fields = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    flags = set(fields.get("Flags", "").split())
    if not flags and Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break
    return {
        "model_name": fields.get("Model name", platform.processor() or "unknown"),
        "vendor": fields.get("Vendor ID"),
        "family": fields.get("CPU family"),
        "model": fields.get("Model"),
        "hypervisor": fields.get("Hypervisor vendor"),
        "cores": os.cpu_count(),
        "avx512f": "avx512f" in flags,
        "avx2": "avx2" in flags,
    }


def describe_cpu(cpu: dict) -> str:
    isa = ", ".join(f"{name} {'yes' if cpu[name] else 'no'}" for name in ("avx512f", "avx2"))
    extra = f" (family {cpu['family']} model {cpu['model']})" if cpu.get("family") else ""
    virt = f", under {cpu['hypervisor']}" if cpu.get("hypervisor") else ""
    return f"{cpu['model_name']}{extra}, {cpu['cores']} cores{virt}; {isa}"


class LoadWatch:
    """Samples the 1-minute load average every ``every`` seconds in a thread."""

    def __init__(self, every: float = 2.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def max(self) -> float:
        return max(self.samples, default=os.getloadavg()[0])


def busy_cores(window: float = 5.0) -> float:
    """Cores the machine kept busy over the next ``window`` seconds (``/proc/stat``)."""
    busy0, _ = cpu_seconds()
    time.sleep(window)
    return (cpu_seconds()[0] - busy0) / window


def wait_for_quiet(threshold: float, wait_s: float, max_busy: float = 0.3) -> float:
    """The 1-minute load average once the machine is quiet, waiting up to ``wait_s``: the
    load average below ``threshold`` and, over 5 s, at most ``max_busy`` cores busy (the
    load average lags by a minute). Past ``wait_s``, the last load average seen."""
    deadline = time.monotonic() + wait_s
    while True:
        load = os.getloadavg()[0]
        busy = busy_cores() if load < threshold else float("nan")
        if (load < threshold and busy <= max_busy) or time.monotonic() >= deadline:
            return load if busy <= max_busy else max(load, threshold)
        print(f"load average {load:.2f}" + (f", {busy:.2f} cores busy" if busy == busy else "")
              + ": waiting for a quiet machine", flush=True)
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))


def matmul_ceiling(n: int = 2048) -> dict:
    """fp32 GFLOP/s of an n^3 matmul (best of 5) in numpy, PyTorch and JAX, a subprocess each."""
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


# ------------------------------------------------------------------ the peers

def cpu_seconds() -> tuple[float, float]:
    """``(busy, steal)`` CPU seconds of the whole machine so far (``/proc/stat``; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def run_peer(peer: Peer, *, epochs: int, batch_size: int, hidden, seed: int,
             data_dir: str | None) -> dict:
    """Run one peer in a fresh process: its epochs, accuracy, time to first result, peak RSS,
    and how many cores other processes used meanwhile (the machine's busy time less the
    peer's and this process's) and the hypervisor stole."""
    cmd = [sys.executable, str(PEERS_DIR / peer.script), "--epochs", str(epochs),
           "--batch-size", str(batch_size), "--hidden", *map(str, hidden), "--seed", str(seed)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    out = {"peer": peer.key, "epochs": [], "seed": seed, "batch_size": batch_size,
           "hidden": list(hidden)}
    with tempfile.TemporaryFile("w+") as err:
        busy0, steal0 = cpu_seconds()
        mine0 = sum(os.times()[:2])
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, **peer.env})
        for line in proc.stdout:
            if not line.startswith("{"):
                continue  # a framework's own chatter
            record = json.loads(line)
            if "epoch" in record:
                out["epochs"].append(record["seconds"])
            elif "test_accuracy" in record:
                out["time_to_result_s"] = time.perf_counter() - start
                out["test_accuracy"] = record["test_accuracy"]
            else:
                out.update(record)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        busy1, steal1 = cpu_seconds()
        peer_cpu = usage.ru_utime + usage.ru_stime + sum(os.times()[:2]) - mine0
        out["other_cpu_cores"] = max(0.0, (busy1 - busy0 - peer_cpu) / wall)
        out["steal_cores"] = (steal1 - steal0) / wall
        if status != 0 or "test_accuracy" not in out:
            err.seek(0)
            tail = "".join(err.readlines()[-15:])
            raise SystemExit(f"{peer.key} failed (wait status {status}):\n{tail}")
    out["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return out


def steady(epochs: list[float]) -> float:
    """Median epoch after the first (which compiles)."""
    return statistics.median(epochs[1:] if len(epochs) > 1 else epochs)


def summarize(runs: list[dict], gflop: float, ceiling: float) -> dict:
    epoch = statistics.median(s for r in runs for s in (r["epochs"][1:] or r["epochs"]))
    return {
        "steady_epoch_s": epoch,
        "share_of_ceiling": gflop / epoch / ceiling,
        "first_epoch_s": statistics.median(r["epochs"][0] for r in runs),
        "time_to_result_s": statistics.median(r["time_to_result_s"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "test_accuracy": [r["test_accuracy"] for r in runs],
        "versions": runs[0].get("versions", {}),
        "runs": runs,
    }


def verdict(values: list[float], holds) -> str:
    ok = [holds(v) for v in values]
    if len(values) < 2:
        return ("holds" if ok[0] else "fails") + " (1 round: no noise estimate)"
    if all(ok):
        return "holds in every round"
    return "fails in every round" if not any(ok) else "within noise (holds in some rounds)"


def targets(summary: dict, ceiling: float, gflop: float, rounds: int) -> list[dict]:
    """The issue's targets, per round (each round's jaxnet vs the same round's peers)."""
    def per_round(key, fn):
        return [fn(summary[key]["runs"][r]) for r in range(rounds)]

    jx = [steady(r["epochs"]) for r in summary["jaxnet"]["runs"]]
    rows = [{"target": "share of ceiling >= 65%", "values": [gflop / e / ceiling for e in jx],
             "holds": lambda v: v >= 0.65, "fmt": "{:.0%}"}]
    if "pytorch" in summary:
        torch_epochs = per_round("pytorch", lambda r: steady(r["epochs"]))
        torch_first = per_round("pytorch", lambda r: r["time_to_result_s"])
        jx_first = [r["time_to_result_s"] for r in summary["jaxnet"]["runs"]]
        rows += [
            {"target": "epoch <= 0.33x PyTorch's",
             "values": [a / b for a, b in zip(jx, torch_epochs, strict=True)],
             "holds": lambda v: v <= 0.33, "fmt": "{:.2f}"},
            {"target": "time to first result <= 0.4x PyTorch's",
             "values": [a / b for a, b in zip(jx_first, torch_first, strict=True)],
             "holds": lambda v: v <= 0.4, "fmt": "{:.2f}"},
        ]
    jax_peers = [k for k in JAX_PEERS if k in summary]
    if jax_peers:
        fastest = [min(steady(summary[k]["runs"][r]["epochs"]) for k in jax_peers)
                   for r in range(rounds)]
        rows.append({"target": ">= 1.4x faster than the fastest JAX peer",
                     "values": [f / j for f, j in zip(fastest, jx, strict=True)],
                     "holds": lambda v: v >= 1.4, "fmt": "{:.2f}x"})
    for row in rows:
        row["verdict"] = verdict(row["values"], row.pop("holds"))
    return rows


# ------------------------------------------------------------------- printing

def print_table(summary: dict, ceiling: float, gflop: float) -> None:
    jx = summary["jaxnet"]
    print("\n| | epoch (steady) | share of ceiling | first result | peak RSS | test accuracy "
          "| jaxnet ÷ it: epoch | first result | RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, s in summary.items():
        print(f"| {BY_KEY[key].label} | {s['steady_epoch_s']:.2f} s | "
              f"{s['share_of_ceiling']:.0%} | {s['time_to_result_s']:.1f} s | "
              f"{s['peak_rss_mib']:.0f} MiB | "
              + " / ".join(f"{a:.4f}" for a in s["test_accuracy"]) + " | "
              f"{jx['steady_epoch_s'] / s['steady_epoch_s']:.2f} | "
              f"{jx['time_to_result_s'] / s['time_to_result_s']:.2f} | "
              f"{jx['peak_rss_mib'] / s['peak_rss_mib']:.2f} |")
    print(f"\none epoch = {gflop:.1f} GFLOP; ceiling {ceiling:.0f} GFLOP/s")
    if any(s["share_of_ceiling"] > 1 for s in summary.values()):
        print("a share above 100%: the ceiling was measured while the machine was busy")


def print_grid(grid: list[dict]) -> None:
    print("\n| hidden | batch | jaxnet epoch | PyTorch epoch | jaxnet ÷ PyTorch "
          "| jaxnet share of ceiling | PyTorch share |")
    print("|---|---|---|---|---|---|---|")
    for c in grid:
        print(f"| {'-'.join(map(str, c['hidden']))} | {c['batch_size']} | "
              f"{c['jaxnet_s']:.2f} s | {c['pytorch_s']:.2f} s | "
              f"{c['jaxnet_s'] / c['pytorch_s']:.2f} | {c['jaxnet_share']:.0%} | "
              f"{c['pytorch_share']:.0%} |")


def plot_grid(grid: list[dict], ceiling: float, path: Path, title: str) -> bool:
    try:
        import matplotlib
    except ImportError:
        print("no plot: matplotlib is not installed (pip install -e .[bench])")
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for width in sorted({c["hidden"][0] for c in grid}):
        cells = sorted((c for c in grid if c["hidden"][0] == width), key=lambda c: c["batch_size"])
        b = [c["batch_size"] for c in cells]
        hidden = "-".join(map(str, cells[0]["hidden"]))
        style = "-" if width == min(GRID_WIDTHS) else "--"
        for key, color in (("jaxnet", "tab:blue"), ("pytorch", "tab:orange")):
            name = "jaxnet" if key == "jaxnet" else "PyTorch"
            left.plot(b, [c[f"{key}_s"] for c in cells], style, marker="o", color=color,
                      label=f"{name}, hidden {hidden}")
            right.plot(b, [100 * c[f"{key}_share"] for c in cells], style, marker="o",
                       color=color)
    batches = sorted({c["batch_size"] for c in grid})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
    left.set_yscale("log")
    left.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
    left.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_ylabel("steady-state epoch (s)")
    right.set_ylabel(f"% of matmul ceiling ({ceiling:.0f} GFLOP/s)")
    left.legend(fontsize=7, handlelength=3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 1 round, 2 epochs, a corner of the grid, "
                             "no load gate, results under benchmarks/results/quick/")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (2)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run (5, the recipe's; >= 2: epoch 1 compiles)")
    parser.add_argument("--grid-epochs", type=int, default=None,
                        help="epochs per cost-growth run (3)")
    parser.add_argument("--peers", nargs="+", choices=[p.key for p in PEERS],
                        default=[p.key for p in PEERS], help="which peers (all)")
    parser.add_argument("--no-table", action="store_true", help="skip the peer table")
    parser.add_argument("--no-grid", action="store_true", help="skip the cost growth")
    parser.add_argument("--seed", type=int, default=0, help="round r uses seed + r")
    parser.add_argument("--data-dir", help="MNIST IDX folder ($JAXNET_DATA_DIR or "
                                           "../shared/data/mnist)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for mnist_peers.json, cost_growth.json/.png "
                             "(benchmarks/results, or benchmarks/results/quick with --quick)")
    parser.add_argument("--max-start-load", type=float, default=1.5,
                        help="start only below this 1-minute load average (1.5)")
    parser.add_argument("--max-load", type=float, default=3.0,
                        help="stop if the load average rises above this during the run (3.0)")
    parser.add_argument("--max-other-cpu", type=float, default=0.5,
                        help="discard and rerun a peer's run if other processes used more than "
                             "this many cores on average meanwhile (0.5)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds in all to wait for a quiet machine, at the start and "
                             "before rerunning a discarded run (0)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 2)
    epochs = args.epochs or (2 if args.quick else 5)
    grid_epochs = args.grid_epochs or (2 if args.quick else 3)
    if min(epochs, grid_epochs) < 2:
        parser.error("--epochs/--grid-epochs: expected at least 2 (the steady state is "
                     "epochs 2..)")
    if "jaxnet" not in args.peers:
        parser.error("--peers: jaxnet is what the others are compared with")
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    missing = [k for k in args.peers if importlib.util.find_spec(BY_KEY[k].package) is None]
    if missing:
        print(f"skipped (not installed; pip install -e .[torch,bench]): {', '.join(missing)}")
    peers = [BY_KEY[k] for k in args.peers if k not in missing]
    grid_cells = [] if args.no_grid else (
        list(QUICK_GRID) if args.quick else [(b, w) for w in GRID_WIDTHS for b in GRID_BATCHES])
    if grid_cells and "pytorch" not in [p.key for p in peers]:
        print("no cost growth: it compares jaxnet with PyTorch, which is not installed")
        grid_cells = []

    cpu = cpu_info()
    date = datetime.datetime.now().astimezone().isoformat(timespec="minutes")
    print(f"CPU: {describe_cpu(cpu)}")
    start_load = (os.getloadavg()[0] if args.quick
                  else wait_for_quiet(args.max_start_load, args.wait))
    git = git_state()
    print(f"{date}; 1-minute load average at start {start_load:.2f}"
          + (" — QUICK: checks that it runs; these numbers are not measurements"
             if args.quick else ""), flush=True)
    if not args.quick and start_load >= args.max_start_load:
        print(f"not measuring: the load average is {start_load:.2f} >= {args.max_start_load} "
              f"(other work on this machine would be in the numbers). Try later, with "
              f"--wait SECONDS, or --quick to check that it runs.")
        return 2

    class TooLoaded(Exception):
        pass

    deadline = time.monotonic() + args.wait

    def run_gated(peer: Peer, **kw) -> dict:
        """run_peer, kept only if the machine stayed quiet; otherwise wait for quiet and rerun
        (until ``--wait`` runs out)."""
        attempt = 0
        while True:
            attempt += 1
            first = len(watch.samples)
            res = run_peer(peer, data_dir=args.data_dir, **kw)
            res["load_max"] = max([*watch.samples[first:], os.getloadavg()[0]])
            if args.quick or (res["load_max"] <= args.max_load
                              and res["other_cpu_cores"] <= args.max_other_cpu):
                return res
            print(f"  {peer.key}: run {attempt} discarded (load average up to "
                  f"{res['load_max']:.2f}, other processes {res['other_cpu_cores']:.2f} cores)",
                  flush=True)
            if time.monotonic() >= deadline or wait_for_quiet(
                    args.max_start_load, deadline - time.monotonic()) >= args.max_start_load:
                break
        raise TooLoaded(f"{peer.key} could not be measured on a quiet machine (load average "
                        f"{res['load_max']:.2f}, other processes {res['other_cpu_cores']:.2f} "
                        f"cores)")

    def run_table(runs: dict) -> None:
        print(f"\n{rounds} round(s), {epochs} epochs, course recipe; order rotates per round",
              flush=True)
        for r in range(rounds):
            for peer in peers[r % len(peers):] + peers[:r % len(peers)]:
                res = run_gated(peer, epochs=epochs, batch_size=64, hidden=[512, 256],
                                seed=args.seed + r)
                runs[peer.key].append(res)
                print(f"round {r + 1} {peer.key:8s} epochs "
                      + " ".join(f"{s:.2f}" for s in res["epochs"])
                      + f" s; accuracy {res['test_accuracy']:.4f}; first result "
                        f"{res['time_to_result_s']:.1f} s; peak {res['peak_rss_mib']:.0f} MiB; "
                        f"load <= {res['load_max']:.2f}, others {res['other_cpu_cores']:.2f} "
                        f"cores", flush=True)

    def run_grid(grid: list) -> None:
        for i, (batch, width) in enumerate(grid_cells):
            cell = {"batch_size": batch, "hidden": hidden_of(width)}
            pair = ("jaxnet", "pytorch") if i % 2 == 0 else ("pytorch", "jaxnet")
            for key in pair:
                res = run_gated(BY_KEY[key], epochs=grid_epochs, batch_size=batch,
                                hidden=hidden_of(width), seed=args.seed)
                cell[f"{key}_epochs"] = res["epochs"]
                cell[f"{key}_s"] = steady(res["epochs"])
                cell[f"{key}_load_max"] = res["load_max"]
                cell[f"{key}_other_cpu_cores"] = res["other_cpu_cores"]
            print(f"grid hidden {width} batch {batch}: jaxnet {cell['jaxnet_s']:.2f} s, "
                  f"PyTorch {cell['pytorch_s']:.2f} s; load {os.getloadavg()[0]:.2f}", flush=True)
            grid.append(cell)

    # Each section is kept only if the machine stayed quiet all through it.
    runs, grid, stopped = {p.key: [] for p in peers}, [], {}
    with LoadWatch() as watch:
        ceilings = [matmul_ceiling()]
        for name, section, output, wanted in (("table", run_table, runs, not args.no_table),
                                              ("grid", run_grid, grid, bool(grid_cells))):
            if not wanted:
                continue
            try:
                section(output)
            except TooLoaded as why:
                stopped[name] = str(why)
                print(f"{name}: stopped, {why}; its numbers are not recorded", flush=True)
        if not args.quick:
            ceilings.append(matmul_ceiling())
    ceiling_by_lib = {k: max(c.get(k, 0.0) for c in ceilings) for k in ceilings[0]}
    ceiling = max(ceiling_by_lib.values())
    load = {"start": start_load, "max": watch.max,
            "median": statistics.median(watch.samples) if watch.samples else start_load}
    kept = [r for rs in runs.values() for r in rs] + [
        {"other_cpu_cores": c[f"{k}_other_cpu_cores"]} for c in grid for k in ("jaxnet", "pytorch")]
    others = [r["other_cpu_cores"] for r in kept] or [0.0]
    header = {"date": date, "quick": args.quick, "cpu": cpu, "python": platform.python_version(),
              "jaxnet_git": git, "other_cpu_cores": {"median": statistics.median(others),
                                                     "max": max(others)},
              "load_average": load, "matmul_ceiling_gflops": ceiling_by_lib,
              "ceiling_gflops": ceiling}

    print(f"\nCPU: {describe_cpu(cpu)}")
    print("matmul ceiling (2048^3 fp32, best of 5): "
          + ", ".join(f"{k} {v:.0f}" for k, v in ceiling_by_lib.items())
          + f" GFLOP/s -> {ceiling:.0f}")
    print(f"{date}; 1-minute load average: start {load['start']:.2f}, median "
          f"{load['median']:.2f}, max {load['max']:.2f} (the benchmark itself adds ~2)"
          + ("\nQUICK: these numbers only show that everything runs" if args.quick else ""))
    print(f"other processes during the kept runs: median {statistics.median(others):.2f}, max "
          f"{max(others):.2f} cores; jaxnet at {git['commit']}"
          + (f" with uncommitted changes in {', '.join(git['dirty'])}" if git["dirty"] else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if not args.no_table and "table" not in stopped:
        gflop = epoch_gflop([512, 256])
        summary = {k: summarize(v, gflop, ceiling) for k, v in runs.items()}
        print_table(summary, ceiling, gflop)
        rows = targets(summary, ceiling, gflop, rounds)
        print("\n| target (issue 11) | per round | verdict |\n|---|---|---|")
        for row in rows:
            fmt = row.pop("fmt")
            print(f"| {row['target']} | " + " / ".join(fmt.format(v) for v in row["values"])
                  + f" | {row['verdict']} |")
        written.append(write_json(out_dir / "mnist_peers.json", {
            **header, "recipe": {"lr": 0.01, "batch_size": 64, "epochs": epochs,
                                 "hidden": [512, 256]},
            "rounds": rounds, "epoch_gflop": gflop, "peers": summary, "targets": rows}))
    if grid and "grid" not in stopped:
        for c in grid:
            g = epoch_gflop(c["hidden"])
            c.update(gflop=g, jaxnet_share=g / c["jaxnet_s"] / ceiling,
                     pytorch_share=g / c["pytorch_s"] / ceiling)
        print_grid(grid)
        title = (f"MNIST MLP epoch, jaxnet vs PyTorch ({cpu['model_name']}, {cpu['cores']} "
                 f"cores, {date[:10]})" + (" — QUICK, not a measurement" if args.quick else ""))
        if plot_grid(grid, ceiling, out_dir / "cost_growth.png", title):
            written.append(out_dir / "cost_growth.png")
        written.append(write_json(out_dir / "cost_growth.json",
                                  {**header, "epochs": grid_epochs, "cells": grid}))
    for path in written:
        print(f"wrote {path}")
    return 3 if stopped else 0


def git_state() -> dict:
    """The commit this jaxnet is at, and its files under jaxnet/ that differ from it."""
    def git(*cmd):
        res = subprocess.run(["git", *cmd], cwd=HERE.parent, capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "jaxnet").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "dirty": dirty}


def write_json(path: Path, data: dict) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
