"""The memory grid: peak RSS of a short data-parallel jaxnet run on N CPU devices.

Each run is a fresh process with the CPU split into N XLA devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``) that trains the
course's MLP through ``fit(..., mesh=parallel.make_mesh(N))``
(``benchmarks/parallel_epoch.py --child``) for one epoch at a global batch
that every N divides. With the batch axis sharded, each device should hold
only its share of the training set, so the process's peak resident memory
should grow little with N; a copy of the whole set per device shows as
~47 MB (uint8 pixels) more per device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICES = (1, 2, 8, 64)
QUICK_DEVICES = (1, 2)
BATCH = 8192  # divisible by every N above; 8 steps an epoch


def run_one(devices: int, *, batch_size: int = BATCH, epochs: int = 1) -> dict:
    """One data-parallel run on ``devices`` CPU devices: peak RSS, wall time, epoch time."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    cmd = [sys.executable, str(HERE / "parallel_epoch.py"), "--child", str(devices),
           str(batch_size), str(epochs)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        proc.returncode = status  # reaped here; keep Popen from waiting again
        err.seek(0)
        err_tail = err.read().strip().splitlines()
    row = {"devices": devices, "batch_size": batch_size, "epochs": epochs,
           "wall_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024}
    if status != 0:
        row["error"] = (err_tail or ["no output"])[-1][:300]
        return row
    measured = json.loads(out.strip().splitlines()[-1])
    row.update(epoch_s=measured["epoch_seconds"][-1],
               compile_s=measured.get("compile_seconds"))
    return row
