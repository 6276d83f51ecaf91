"""MNIST MLP: jaxnet vs PyTorch, Flax NNX, Keras 3 and Equinox on this machine, in one run.

Every peer (``benchmarks/peers/``) trains the same model (784-512-256-10,
ReLU, log-softmax + NLL), with the same recipe (the course's: Adam lr 0.01
constant, batch 64, 5 epochs), the same data (the same uint8 IDX files,
``(x / 255 - 0.5) / 0.5``, a fresh shuffle every epoch) and PyTorch's
initialisation, each in its framework's documented idiom, in a fresh process.
Each peer is also run at its best: Keras with ``steps_per_execution`` = the
epoch's steps and PyTorch with ``torch.compile``. The peers alternate within
each round (the order rotates every round) so machine noise hits them all.

1. **The table**: steady-state epoch (the median over epochs 2..), share of
   the machine's fp32 matmul ceiling (the best of numpy, PyTorch and JAX on a
   2048^3 matmul, measured before and after), time to first result (process
   start to the printed test accuracy), peak RSS, jaxnet's ratio to each.
   Rows: jaxnet cold (``JAXNET_COMPILATION_CACHE`` an empty folder) and warm
   (the same folder, the next process); PyTorch eager cold (the round's first
   process) and warm (the second, right after); ``torch.compile`` (an empty
   Inductor cache, so its first epoch compiles); Flax NNX; Keras ``fit``;
   Keras ``fit`` with ``steps_per_execution``; Equinox; and **the matmul
   floor**, the course step's eight matmuls as one XLA call x938 steps
   (``peers/matmul_floor.py``).
2. **The targets** (``_targets.py``) as ratios per round, with a verdict.
3. **The cost growth and precision grid**: jaxnet float32, jaxnet bf16
   (``--precision bf16``; "precision API not available" where this jaxnet
   has none) and PyTorch, steady epoch and test accuracy at batch 64, 1024,
   8192 and hidden widths 512 (784-512-256-10) and 2048 (784-2048-1024-10),
   a table and a plot (``cost_growth.png``), with the bf16 target per cell.
4. **The memory grid** (``_memory.py``): peak RSS of a short data-parallel
   run on 1, 2, 8 and 64 CPU devices.

Every result file records the machine (``_machine.record``: CPU model,
family/model, the speed flags avx2/avx512f/avx512_bf16/amx, cores, load
average, date, jaxnet's commit and uncommitted files, versions). Files:
``mnist_peers.json`` (table, targets), ``cost_growth.json`` and ``.png``
(grid), ``memory_grid.json``; the sections can run as separate invocations
(``--no-table``, ``--no-grid``, ``--no-memory``), each writing its own files.

The machine should be quiet: a full run starts only when the 1-minute load
average is below ``--max-start-load`` (1.5). A peer's run is kept only if the
load average stayed at most ``--max-load`` (3.0; the benchmark itself adds
~2 on two cores) and other processes used at most ``--max-other-cpu`` cores
(0.5) while it ran; otherwise it is rerun once the machine is quiet again,
waiting at most ``--wait`` seconds in all. A section that cannot be measured
so is reported as stopped and not written; the exit status is then 3 (2:
the machine was never quiet). On a shared machine raise the three limits
and say so: the JSON records the load and the other processes' CPU.
``--quick`` (1 round, 2 epochs, one grid cell, 1 and 2 devices, no gate,
results in ``benchmarks/results/quick/``) only checks that everything runs:
its numbers are not measurements.

Run:  nox -s bench      or   python benchmarks/mnist_peers.py [--quick] [--rounds 2]
(the peers' packages: ``pip install -e .[torch,bench]``)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _machine
import _memory
import _targets
from _machine import cpu_seconds, describe_cpu, wait_for_quiet, write_json
from _plot import plot_grid
from _targets import steady

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
RESULTS = HERE / "results"
N_TRAIN = 60_000
KERAS_ENV = {"KERAS_BACKEND": "jax"}
JAXNET_CACHE = {"JAXNET_COMPILATION_CACHE": "{round_dir}/jaxnet-compile-cache"}


class Peer:
    """One framework's script in ``benchmarks/peers/``, its flags and environment (``{round_dir}``
    in a value: a folder made empty for each round) and the package it needs."""

    def __init__(self, key, label, script, package, *, args=(), env=None):
        self.key, self.label, self.script, self.package = key, label, script, package
        self.args, self.env = list(args), env or {}

    def environ(self, round_dir: str) -> dict:
        return {k: v.format(round_dir=round_dir) for k, v in self.env.items()}


PEERS = [
    Peer("jaxnet", "jaxnet (whole-epoch scan), cold compile cache", "jaxnet_scan.py", "jaxnet",
         env=JAXNET_CACHE),
    Peer("jaxnet_warm", "jaxnet, warm compile cache (next process)", "jaxnet_scan.py",
         "jaxnet", env=JAXNET_CACHE),
    Peer("pytorch", "PyTorch eager, DataLoader (cold: 1st process)", "torch_dataloader.py",
         "torch"),
    Peer("pytorch_warm", "PyTorch eager, DataLoader (warm: 2nd process)",
         "torch_dataloader.py", "torch"),
    Peer("torch_compile", "PyTorch torch.compile (empty Inductor cache)", "torch_dataloader.py",
         "torch", args=["--compile"], env={"TORCHINDUCTOR_CACHE_DIR": "{round_dir}/inductor"}),
    Peer("nnx", "Flax NNX, nnx.Optimizer + nnx.jit loop", "nnx_jit.py", "flax"),
    Peer("keras", "Keras 3 on JAX, model.fit", "keras_fit.py", "keras", env=KERAS_ENV),
    Peer("keras_spe", "Keras 3 fit, steps_per_execution = steps per epoch", "keras_fit.py",
         "keras", args=["--steps-per-execution", "0"], env=KERAS_ENV),
    Peer("equinox", "Equinox, filter_jit loop", "equinox_jit.py", "equinox"),
    Peer("floor", "matmul floor: the step's 8 matmuls, one XLA call x938", "matmul_floor.py",
         "jax"),
]
BY_KEY = {p.key: p for p in PEERS}
# Rotated as units: a warm run follows its cold one in the same round.
GROUPS = (("jaxnet", "jaxnet_warm"), ("pytorch", "pytorch_warm"), ("torch_compile",), ("nnx",),
          ("keras",), ("keras_spe",), ("equinox",), ("floor",))
GRID_BATCHES = (64, 1024, 8192)
GRID_WIDTHS = (512, 2048)
QUICK_GRID = ((1024, 512),)
NO_PRECISION = "precision API not available"


def hidden_of(width: int) -> list[int]:
    """Hidden layers of width ``width``: the course's shape (512, 256) scaled."""
    return [width, width // 2]


def epoch_gflop(hidden, n: int = N_TRAIN) -> float:
    """Forward + backward matmul GFLOP of one epoch: 3x the forward matmuls, less the
    input gradient of the first layer (nobody computes it)."""
    sizes = [784, *hidden, 10]
    forward = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return (3 * forward - 2 * sizes[0] * sizes[1]) * n / 1e9


class PeerError(Exception):
    """A peer's run failed: its script said it cannot run this configuration
    (``{"error": ...}``), it crashed (the last lines of its stderr) or it timed out."""


# ------------------------------------------------------------------ the peers

def run_peer(peer: Peer, *, epochs: int, batch_size: int, hidden, seed: int,
             data_dir: str | None, round_dir: str, args=(), timeout: float | None = None) -> dict:
    """Run one peer in a fresh process: its epochs, accuracy, time to first result, peak RSS,
    and how many cores other processes used meanwhile (the machine's busy time less the
    peer's and this process's) and the hypervisor stole. Past ``timeout`` seconds the process
    is killed and :class:`PeerError` says so."""
    cmd = [sys.executable, str(PEERS_DIR / peer.script), "--epochs", str(epochs),
           "--batch-size", str(batch_size), "--hidden", *map(str, hidden), "--seed", str(seed),
           *peer.args, *args]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    out = {"peer": peer.key, "epochs": [], "seed": seed, "batch_size": batch_size,
           "hidden": list(hidden)}
    with tempfile.TemporaryFile("w+") as err:
        busy0, steal0 = cpu_seconds()
        mine0 = sum(os.times()[:2])
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, **peer.environ(round_dir)})
        killer = threading.Timer(timeout, proc.kill) if timeout else None
        if killer:
            killer.start()
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
        proc.returncode = status  # reaped here
        wall = time.perf_counter() - start
        if killer:
            killer.cancel()
            if wall >= timeout:
                raise PeerError(f"timed out after {timeout:.0f} s (--peer-timeout)")
        busy1, steal1 = cpu_seconds()
        peer_cpu = usage.ru_utime + usage.ru_stime + sum(os.times()[:2]) - mine0
        out["other_cpu_cores"] = max(0.0, (busy1 - busy0 - peer_cpu) / wall)
        out["steal_cores"] = (steal1 - steal0) / wall
        if "error" in out:
            raise PeerError(out["error"])
        if status != 0 or "test_accuracy" not in out:
            err.seek(0)
            tail = "".join(err.readlines()[-15:])
            raise PeerError(f"{peer.key} failed (wait status {status}):\n{tail}")
    out["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    return out


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


# ------------------------------------------------------------------- printing

def _acc(values) -> str:
    return " / ".join("—" if a is None else f"{a:.4f}" for a in values)


def print_table(summary: dict, ceiling: float, gflop: float) -> None:
    jx = summary["jaxnet"]
    print("\n| | epoch (steady) | share of ceiling | first epoch | first result | peak RSS "
          "| test accuracy | jaxnet ÷ it: epoch | first result | RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, s in summary.items():
        floor = key == "floor"  # trains nothing: no result, no model
        print(f"| {BY_KEY[key].label} | {s['steady_epoch_s']:.2f} s | "
              f"{s['share_of_ceiling']:.0%} | {s['first_epoch_s']:.2f} s | "
              + ("— | — | — | " if floor else
                 f"{s['time_to_result_s']:.1f} s | {s['peak_rss_mib']:.0f} MiB | "
                 f"{_acc(s['test_accuracy'])} | ")
              + f"{jx['steady_epoch_s'] / s['steady_epoch_s']:.2f} | "
              + ("— | — |" if floor else
                 f"{jx['time_to_result_s'] / s['time_to_result_s']:.2f} | "
                 f"{jx['peak_rss_mib'] / s['peak_rss_mib']:.2f} |"))
    print(f"\none epoch = {gflop:.1f} GFLOP; fp32 ceiling {ceiling:.0f} GFLOP/s")
    if any(s["share_of_ceiling"] > 1 for s in summary.values()):
        print("a share above 100%: the ceiling was measured while the machine was busy")


def print_targets(rows: list[dict], title: str = "target (issue 20)") -> None:
    print(f"\n| {title} | per round | verdict |\n|---|---|---|")
    for row in rows:
        values = " / ".join(row["fmt"].format(v) for v in row["values"]) or "—"
        print(f"| {row['target']} | {values} | {row['verdict']} |")


def print_grid(grid: list[dict], precision_rows: list[dict]) -> None:
    print("\n| hidden | batch | jaxnet fp32 epoch | jaxnet bf16 epoch | bf16 ÷ fp32 "
          "| accuracy fp32 / bf16 | PyTorch epoch | jaxnet fp32 ÷ PyTorch | bf16 target |")
    print("|---|---|---|---|---|---|---|---|---|")
    verdicts = {(tuple(r["hidden"]), r["batch_size"]): r["verdict"] for r in precision_rows}
    for c in grid:
        bf = c.get("jaxnet_bf16_s")
        print(f"| {'-'.join(map(str, c['hidden']))} | {c['batch_size']} | "
              f"{c['jaxnet_s']:.2f} s | " + (f"{bf:.2f} s | {bf / c['jaxnet_s']:.2f} | "
                                             if bf else "— | — | ")
              + f"{c['jaxnet_accuracy']:.4f} / "
              + (f"{c['jaxnet_bf16_accuracy']:.4f}" if bf else "—")
              + (f" | {c['pytorch_s']:.2f} s | {c['jaxnet_s'] / c['pytorch_s']:.2f} | "
                 if "pytorch_s" in c else " | — | — | ")
              + verdicts.get((tuple(c["hidden"]), c["batch_size"]), "—") + " |")


def print_memory(rows: list[dict]) -> None:
    print(f"\nmemory grid: one data-parallel epoch at global batch {rows[0]['batch_size']}, "
          "CPU split into N XLA devices")
    print("| devices | peak RSS | epoch | wall |\n|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['devices']} | failed: {r['error']} | | |")
        else:
            print(f"| {r['devices']} | {r['peak_rss_mib']:.0f} MiB | {r['epoch_s']:.2f} s | "
                  f"{r['wall_s']:.1f} s |")


# ----------------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check that it runs: 1 round, 2 epochs, one grid cell, 1 and 2 "
                             "devices, no load gate, results under benchmarks/results/quick/")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (2)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run (5, the recipe's; >= 2: epoch 1 compiles)")
    parser.add_argument("--grid-epochs", type=int, default=None,
                        help="epochs per grid run (2: a compile epoch and a steady one)")
    parser.add_argument("--peers", nargs="+", choices=[p.key for p in PEERS],
                        default=[p.key for p in PEERS], help="which rows (all)")
    parser.add_argument("--no-table", action="store_true", help="skip the peer table")
    parser.add_argument("--no-grid", action="store_true", help="skip the cost/precision grid")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory grid")
    parser.add_argument("--grid-batches", type=int, nargs="+", default=list(GRID_BATCHES),
                        help="the grid's batch sizes (64 1024 8192)")
    parser.add_argument("--grid-widths", type=int, nargs="+", default=list(GRID_WIDTHS),
                        help="the grid's first hidden widths (512 2048)")
    parser.add_argument("--memory-devices", type=int, nargs="+", default=list(_memory.DEVICES),
                        help="the memory grid's CPU device counts (1 2 8 64)")
    parser.add_argument("--peer-timeout", type=float, default=900.0,
                        help="seconds a table row's process may run before it is killed and "
                             "the row reported as not measured (900)")
    parser.add_argument("--seed", type=int, default=0, help="round r uses seed + r")
    parser.add_argument("--data-dir", help="MNIST IDX folder ($JAXNET_DATA_DIR or "
                                           "../shared/data/mnist)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for mnist_peers.json, cost_growth.json/.png "
                             "(benchmarks/results, or benchmarks/results/quick with --quick)")
    parser.add_argument("--max-start-load", type=float, default=1.5,
                        help="start only below this 1-minute load average (1.5)")
    parser.add_argument("--max-load", type=float, default=3.0,
                        help="rerun a peer's run if the load average rose above this (3.0)")
    parser.add_argument("--max-other-cpu", type=float, default=0.5,
                        help="rerun a peer's run if other processes used more than this many "
                             "cores on average meanwhile (0.5)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds in all to wait for a quiet machine, at the start and "
                             "before rerunning a discarded run (0)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.epochs = args.epochs or (2 if args.quick else 5)
    args.grid_epochs = args.grid_epochs or 2
    if min(args.epochs, args.grid_epochs) < 2:
        parser.error("--epochs/--grid-epochs: expected at least 2 (the steady state is "
                     "epochs 2..)")
    if "jaxnet" not in args.peers:
        parser.error("--peers: jaxnet is what the others are compared with")
    return args


def installed(package: str) -> bool:
    """Whether a peer's package can be imported here (a row whose package is missing is
    skipped and named)."""
    return importlib.util.find_spec(package) is not None


def main(argv=None) -> int:
    args = parse_args(argv)
    rounds, epochs = args.rounds, args.epochs
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    missing = [k for k in args.peers if not installed(BY_KEY[k].package)]
    if missing:
        print(f"skipped (not installed; pip install -e .[torch,bench]): {', '.join(missing)}")
    chosen = [k for k in args.peers if k not in missing]
    groups = [[k for k in g if k in chosen] for g in GROUPS]
    groups = [g for g in groups if g]
    grid_cells = [] if args.no_grid else (
        list(QUICK_GRID) if args.quick else
        [(b, w) for w in args.grid_widths for b in args.grid_batches])
    if grid_cells and "pytorch" not in chosen:
        print("grid: jaxnet float32 and bf16 only (PyTorch not installed or not chosen)")
    devices = [] if args.no_memory else list(
        _memory.QUICK_DEVICES if args.quick else args.memory_devices)

    # A quiet machine: at most 0.3 cores busy before a run, or what --max-other-cpu allows
    # when it is raised above its default (a shared machine, said so in the JSON).
    quiet_busy = 0.3 if args.max_other_cpu <= 0.5 else args.max_other_cpu
    machine = _machine.record()
    print(f"CPU: {describe_cpu(machine['cpu'])}")
    start_load = (os.getloadavg()[0] if args.quick
                  else wait_for_quiet(args.max_start_load, args.wait, quiet_busy))
    print(f"{machine['date']}; 1-minute load average at start {start_load:.2f}"
          + (" — QUICK: checks that it runs; these numbers are not measurements"
             if args.quick else ""), flush=True)
    if not args.quick and start_load >= args.max_start_load:
        print(f"not measuring: the load average is {start_load:.2f} >= {args.max_start_load} "
              f"(other work on this machine would be in the numbers). Try later, with "
              f"--wait SECONDS, a higher --max-start-load (and say so), or --quick.")
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
                    args.max_start_load, deadline - time.monotonic(),
                    quiet_busy) >= args.max_start_load:
                break
        raise TooLoaded(f"{peer.key} could not be measured on a quiet machine (load average "
                        f"{res['load_max']:.2f}, other processes {res['other_cpu_cores']:.2f} "
                        f"cores)")

    def run_table(runs: dict) -> None:
        print(f"\n{rounds} round(s), {epochs} epochs, course recipe; order rotates per round",
              flush=True)
        for r in range(rounds):
            with tempfile.TemporaryDirectory(prefix="jaxnet-bench-") as round_dir:
                for group in groups[r % len(groups):] + groups[:r % len(groups)]:
                    for key in group:
                        if key in not_measured:
                            continue
                        try:
                            res = run_gated(BY_KEY[key], epochs=epochs, batch_size=64,
                                            hidden=[512, 256], seed=args.seed + r,
                                            round_dir=round_dir, timeout=args.peer_timeout)
                        except PeerError as why:  # a row missing from one round: from all
                            not_measured[key] = f"round {r + 1}: {why}"
                            runs[key] = []
                            print(f"round {r + 1} {key:13s} not measured: {why}", flush=True)
                            continue
                        runs[key].append(res)
                        acc = res["test_accuracy"]
                        print(f"round {r + 1} {key:13s} epochs "
                              + " ".join(f"{s:.2f}" for s in res["epochs"])
                              + f" s; accuracy {'—' if acc is None else f'{acc:.4f}'}; first "
                                f"result {res['time_to_result_s']:.1f} s; peak "
                                f"{res['peak_rss_mib']:.0f} MiB; load <= {res['load_max']:.2f}, "
                                f"others {res['other_cpu_cores']:.2f} cores", flush=True)

    def run_grid(grid: list) -> None:
        bf16 = True
        for i, (batch, width) in enumerate(grid_cells):
            cell = {"batch_size": batch, "hidden": hidden_of(width)}
            order = [("jaxnet", ()), ("jaxnet_bf16", ("--precision", "bf16"))] + (
                [("pytorch", ())] if "pytorch" in chosen else [])
            for name, extra in (order if i % 2 == 0 else order[::-1]):
                if name == "jaxnet_bf16" and not bf16:
                    continue
                peer = BY_KEY["jaxnet" if name.startswith("jaxnet") else "pytorch"]
                with tempfile.TemporaryDirectory(prefix="jaxnet-bench-") as round_dir:
                    try:
                        res = run_gated(peer, epochs=args.grid_epochs, batch_size=batch,
                                        hidden=hidden_of(width), seed=args.seed,
                                        round_dir=round_dir, args=extra)
                    except PeerError as why:
                        if name != "jaxnet_bf16":
                            raise
                        print(f"grid: jaxnet bf16: {why}", flush=True)
                        precision["status"] = str(why)
                        bf16 = False
                        continue
                cell[f"{name}_epochs"] = res["epochs"]
                cell[f"{name}_s"] = steady(res["epochs"])
                cell[f"{name}_accuracy"] = res["test_accuracy"]
                cell[f"{name}_load_max"] = res["load_max"]
                cell[f"{name}_other_cpu_cores"] = res["other_cpu_cores"]
            print(f"grid hidden {width} batch {batch}: jaxnet {cell['jaxnet_s']:.2f} s"
                  + (f", bf16 {cell['jaxnet_bf16_s']:.2f} s" if "jaxnet_bf16_s" in cell else "")
                  + (f", PyTorch {cell['pytorch_s']:.2f} s" if "pytorch_s" in cell else "")
                  + f"; load {os.getloadavg()[0]:.2f}",
                  flush=True)
            grid.append(cell)
        if bf16:
            precision["status"] = "measured"

    def run_memory(rows: list) -> None:
        for n in devices:
            row = _memory.run_one(n)
            rows.append(row)
            print(f"memory: {n} device(s): " + (f"failed: {row['error']}" if "error" in row
                                                else f"peak RSS {row['peak_rss_mib']:.0f} MiB, "
                                                     f"epoch {row['epoch_s']:.2f} s"),
                  flush=True)

    # Each section is kept only if the machine stayed quiet all through it.
    runs, grid, memory, stopped = {k: [] for k in chosen}, [], [], {}
    not_measured: dict[str, str] = {}
    precision = {"status": "not run"}
    # The ceiling only matters to the table and the grid (the memory grid alone skips it).
    needs_ceiling = not args.no_table or bool(grid_cells)
    with _machine.LoadWatch() as watch:
        ceilings = [_machine.matmul_ceiling() if needs_ceiling else {}]
        for name, section, output, wanted in (
                ("table", run_table, runs, not args.no_table),
                ("grid", run_grid, grid, bool(grid_cells)),
                ("memory", run_memory, memory, bool(devices))):
            if not wanted:
                continue
            try:
                section(output)
            except (TooLoaded, PeerError) as why:
                stopped[name] = str(why)
                print(f"{name}: stopped, {why}; its numbers are not recorded", flush=True)
        if not args.quick and needs_ceiling:
            ceilings.append(_machine.matmul_ceiling())
    ceiling_by_lib = {k: max(c.get(k, 0.0) for c in ceilings) for k in ceilings[0]}
    ceiling = max(ceiling_by_lib.values(), default=float("nan"))
    load = {"start": start_load, "max": watch.max,
            "median": statistics.median(watch.samples) if watch.samples else start_load,
            "end": list(os.getloadavg())}
    kept = [r for rs in runs.values() for r in rs] + [
        {"other_cpu_cores": c[k]} for c in grid for k in c if k.endswith("_other_cpu_cores")]
    others = [r["other_cpu_cores"] for r in kept] or [0.0]
    gate = {"max_start_load": args.max_start_load, "max_load": args.max_load,
            "max_other_cpu": args.max_other_cpu, "quick": args.quick}
    header = {**machine, "quick": args.quick, "gate": gate,
              "other_cpu_cores": {"median": statistics.median(others), "max": max(others)},
              "load_average": load, "matmul_ceiling_gflops": ceiling_by_lib,
              "ceiling_gflops": ceiling}

    git = machine["jaxnet_git"]
    print(f"\nCPU: {describe_cpu(machine['cpu'])}")
    print("matmul ceiling (2048^3 fp32, best of 5): "
          + ", ".join(f"{k} {v:.0f}" for k, v in ceiling_by_lib.items())
          + f" GFLOP/s -> {ceiling:.0f}")
    print(f"{machine['date']}; 1-minute load average: start {load['start']:.2f}, median "
          f"{load['median']:.2f}, max {load['max']:.2f} (the benchmark itself adds ~2)"
          + ("\nQUICK: these numbers only show that everything runs" if args.quick else ""))
    print(f"other processes during the kept runs: median {statistics.median(others):.2f}, max "
          f"{max(others):.2f} cores; jaxnet at {git['commit']}"
          + (f" with uncommitted changes in {', '.join(git['dirty'])}" if git["dirty"] else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    report = {**header, "recipe": {"lr": 0.01, "batch_size": 64, "epochs": epochs,
                                   "hidden": [512, 256]}, "rounds": rounds}
    if not args.no_table and "table" not in stopped:
        gflop = epoch_gflop([512, 256])
        summary = {k: summarize(v, gflop, ceiling) for k, v in runs.items() if v}
        print_table(summary, ceiling, gflop)
        rows = _targets.table_targets(runs, rounds, gflop, ceiling)
        print_targets(rows)
        for key, why in not_measured.items():
            print(f"not measured: {BY_KEY[key].label}: {why}")
        report.update(epoch_gflop=gflop, peers=summary, targets=rows, not_measured=not_measured,
                      time_to_first_result={
            k: summary[k]["time_to_result_s"] for k in
            ("jaxnet", "jaxnet_warm", "pytorch", "pytorch_warm", "torch_compile")
            if k in summary})
    if "peers" in report:
        written.append(write_json(out_dir / "mnist_peers.json", report))
    if memory and "memory" not in stopped:
        print_memory(memory)
        written.append(write_json(out_dir / "memory_grid.json", {
            **header, "batch_size": memory[0]["batch_size"], "rows": memory}))
    if grid and "grid" not in stopped:
        for c in grid:
            g = epoch_gflop(c["hidden"])
            c["gflop"] = g
            for key in ("jaxnet", "jaxnet_bf16", "pytorch"):
                if c.get(f"{key}_s"):
                    c[f"{key}_share"] = g / c[f"{key}_s"] / ceiling
        precision_rows = _targets.precision_targets(grid)
        print_grid(grid, precision_rows)
        if precision["status"] != "measured":
            print(f"bf16: {precision['status']}")
        cpu = machine["cpu"]
        versus = " vs PyTorch" if any("pytorch_s" in c for c in grid) else ""
        title = (f"MNIST MLP epoch, jaxnet (float32, bf16){versus} ({cpu['model_name']}, "
                 f"{cpu['cores']} cores, {machine['date'][:10]})"
                 + (" — QUICK, not a measurement" if args.quick else ""))
        if plot_grid(grid, ceiling, out_dir / "cost_growth.png", title):
            written.append(out_dir / "cost_growth.png")
        written.append(write_json(out_dir / "cost_growth.json", {
            **header, "epochs": args.grid_epochs, "precision": precision,
            "precision_targets": precision_rows, "cells": grid}))
    for path in written:
        print(f"wrote {path}")
    return 3 if stopped else 0


if __name__ == "__main__":
    raise SystemExit(main())
